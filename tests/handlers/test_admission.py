"""The validating webhook's handler, called directly.

The tests/kube API server (apiextensions-apiserver) runs with the webhook admission plugins
disabled: their informers need admissionregistration.k8s.io, which it does not serve
(reference/real-kube-apiserver.md), so it can never call a webhook back. What admission decides
is therefore tested here, on the handler kopf registers, with a real kopf index-like store."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest

from tests.api.test_guardrails import POLICY, VIOLATIONS, _ok
from tfms.api import names
from tfms.handlers import admission
from tfms.handlers.config import OperatorConfig


def _call(body: dict[str, Any], old: dict[str, Any] | None = None, policies: list[dict[str, Any]] | None = None,
          ) -> None:
    index = {"all": policies or []}
    admission.validate_tfmodelservice(body=kopf.Body(body), old=old, memo=kopf.Memo(config=OperatorConfig()),
                                      tfms_policies=index)


@pytest.mark.parametrize(("spec", "expected"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_admission_refuses_each_violation_with_the_rule(spec: dict[str, Any],
                                                        expected: list[tuple[str, str]]) -> None:
    body = _ok(**spec)
    _call(body)  # without policies it is a valid spec
    with pytest.raises(kopf.AdmissionError) as info:
        _call(body, policies=[POLICY])
    assert info.value.code == 422
    for path, rule in expected:
        assert f"{path}: TFModelServicePolicy platform:" in str(info.value) and f"[{rule}]" in str(info.value)


def test_admission_refuses_invalid_specs_and_credentials() -> None:
    body = _ok(runtime={"env": [{"name": "DB_PASSWORD", "value": "hunter22"}]}, traffic=[{"percent": 10}])
    with pytest.raises(kopf.AdmissionError) as info:
        _call(body)
    text = str(info.value)
    assert "spec.runtime.env[0].value" in text and "[env-plain-credential]" in text
    assert "spec.traffic: percentages must sum to exactly 100 [traffic-sum]" in text


def test_updates_that_keep_the_spec_are_always_admitted() -> None:
    """Finalizer removal and kopf's annotation patches must pass even when a policy added later
    forbids the spec, or a deletion would wedge."""
    body = _ok(access={"public": True})
    old = copy.deepcopy(body)
    body["metadata"]["finalizers"] = []
    _call(body, old=old, policies=[POLICY])
    deleting = _ok(access={"public": True})
    deleting["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    _call(deleting, old=_ok(), policies=[POLICY])
    with pytest.raises(kopf.AdmissionError):
        _call(_ok(access={"public": True}), old=_ok(), policies=[POLICY])


def test_handler_is_registered_fail_closed_for_creates_and_updates() -> None:
    registry = kopf.OperatorRegistry()
    admission.register_webhook(registry)
    handlers = [h for h in registry._webhooks.get_all_handlers() if h.id == names.WEBHOOK_ID]
    (handler,) = handlers
    assert handler.ignore_failures is False
    assert sorted(handler.operations or []) == ["CREATE", "UPDATE"]


def test_policy_index_feeds_the_handlers() -> None:
    entry = admission.tfms_policies(name="platform", spec=POLICY["spec"])
    assert entry == {"all": {"metadata": {"name": "platform"}, "spec": POLICY["spec"]}}
    assert admission.policies_from({"tfms_policies": {"all": [entry["all"]]}}) == [entry["all"]]
    assert admission.policies_from({}) == []
