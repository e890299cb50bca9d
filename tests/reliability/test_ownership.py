"""Issue 10, item 5: only what tfms owns. Services in the same project that tfms did not create
are never written or deleted, by any path (the operator's pass, `tfms apply`, an on-demand
rollout action, deletion with either policy); deletion of a service already gone completes;
Abandon strips ownership and nothing else; cases B-037, B-039 and B-040 (../shared/cases/bugs).
The namespace-deletion part runs against the real API server: tests/kube/test_reliability_operator.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from tests.conftest import base_object
from tfms.api import names
from tfms.api.defaults import Defaults
from tfms.api.validation import parse
from tfms.backends.cloudrun import CloudRun
from tfms.backends.errors import BackendError
from tfms.emulator import Emulator
from tfms.plan.rollout import Action
from tfms.reconcile.objects import Outcome, finalize_object, reconcile_object
from tfms.reconcile.rollout import RolloutContext

DEFAULTS = Defaults()
PARENT = "projects/example-project/locations/us-central1"
WRITES = {"CreateService", "UpdateService", "DeleteService", "SetIamPolicy", "DeleteRevision"}
OPS = "user:ops@example.com"
APP = "serviceAccount:app@example-project.iam.gserviceaccount.com"


def _foreign(raw: run_v2.ServicesClient, service_id: str, labels: dict[str, str] | None = None) -> str:
    svc = run_v2.Service(labels=labels or {"team": "payments"}, template=run_v2.RevisionTemplate(
        containers=[run_v2.Container(image="us-docker.pkg.dev/cloudrun/container/hello:1.0")]))
    raw.create_service(parent=PARENT, service_id=service_id, service=svc).result(timeout=10)  # type: ignore[no-untyped-call]
    name = f"{PARENT}/services/{service_id}"
    policy = policy_pb2.Policy(bindings=[policy_pb2.Binding(role="roles/run.invoker", members=[OPS])])
    raw.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy))
    return name


def _fingerprint(emulator: Emulator, name: str) -> tuple[Any, ...]:
    """Everything a write would change: etag, generation, labels, annotations, traffic, revisions, IAM."""
    state = emulator.state
    svc = state.services[name]
    policy = state.policies.get(name)
    return (svc.etag, svc.generation, dict(svc.labels), dict(svc.annotations), list(svc.traffic),
            sorted(r for r in state.revisions if r.startswith(name + "/")),
            policy.SerializeToString() if policy is not None else b"")


def _writes_to(emulator: Emulator, name: str) -> list[str]:
    out = []
    for call in emulator.control.calls:
        if call.method not in WRITES:
            continue
        req = call.request
        target = str(getattr(getattr(req, "service", None), "name", "") or getattr(req, "name", "")
                     or getattr(req, "resource", "") or f"{getattr(req, 'parent', '')}/services/"
                     f"{getattr(req, 'service_id', '')}")
        if target == name or target.startswith(name + "/"):
            out.append(call.method)
    return out


def _body(name: str = "fraud-scorer", uid: str = "0b0e6b2e-1111-4c1a-9a55-0000000000aa", **spec: Any) -> dict[str, Any]:
    obj = base_object(**spec)
    obj["metadata"].update(name=name, generation=1, uid=uid)
    obj["status"] = {}
    return obj


async def _until_done(api: CloudRun, emulator: Emulator, body: dict[str, Any], **kwargs: Any) -> Outcome:
    for _ in range(100):
        outcome = await reconcile_object(api, body, DEFAULTS, now="2026-12-04T00:00:00Z", **kwargs)
        body["status"] = outcome.status
        if outcome.done or outcome.permanent:
            return outcome
        emulator.wait_until(lambda s: not any(x.reconciling for x in s.services.values()), 5)
    raise AssertionError(f"not done: {outcome}")


def _ready(outcome: Outcome) -> dict[str, Any]:
    return next(c for c in outcome.status["conditions"] if c["type"] == "Ready")


async def test_foreign_services_are_never_written_or_deleted_by_any_path(
        backend: CloudRun, emulator: Emulator, raw: run_v2.ServicesClient) -> None:
    from tfms.cli.apply import apply_all

    same_name = _foreign(raw, "fraud-scorer")  # what a tfms object of that name would create
    bystander = _foreign(raw, "payments-api")
    before = {n: _fingerprint(emulator, n) for n in (same_name, bystander)}

    # The operator's pass, with access and a canary, and an on-demand rollback: refused, permanent, once.
    body = _body(access={"invokers": [APP], "public": True},
                 rollout={"strategy": "canary", "steps": [10, 100], "interval": "1s"})
    for ctx in (None, RolloutContext(action=Action.ROLLBACK)):
        outcome = await reconcile_object(backend, body, DEFAULTS, now="t0", rollout=ctx, iam=backend)
        assert outcome.permanent and outcome.done and not outcome.transient  # B-039: no retry loop
        assert _ready(outcome)["reason"] == "NotOwned" and "not created by tfms" in _ready(outcome)["message"]
    # `tfms apply`
    (result,) = await apply_all([parse(base_object())], emulator.address, timeout=10, interval=0.05)
    assert result.action == "error" and "not created by tfms" in result.state.message, result
    # Deletion, both policies (B-040): a service of the same name is left alone.
    for policy in ("Delete", "Abandon"):
        message = await finalize_object(backend, _body(deletionPolicy=policy), DEFAULTS)
        assert "does not own" in message
    # A whole lifecycle of another object in the same project and region touches only its own service.
    mine = _body("fraud-scorer-2", access={"invokers": [APP]})
    assert (await _until_done(backend, emulator, mine)).ready
    mine["spec"]["runtime"]["env"] = [{"name": "A", "value": "1"}]
    mine["metadata"]["generation"] = 2
    assert (await _until_done(backend, emulator, mine)).ready
    assert (await finalize_object(backend, mine, DEFAULTS)).startswith("deleted")

    for name in (same_name, bystander):
        assert _writes_to(emulator, name) == ["CreateService", "SetIamPolicy"]  # the owner's own two
        assert _fingerprint(emulator, name) == before[name]


async def test_a_lookalike_with_our_labels_but_another_uid_is_not_ours(
        backend: CloudRun, emulator: Emulator, raw: run_v2.ServicesClient) -> None:
    """B-040: ownership is the object's UID, not only its namespace and name (another cluster's
    object, or an earlier object of the same name): neither updated nor deleted nor abandoned."""
    other = {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.LABEL_NAMESPACE: "ml",
             names.LABEL_NAME: "fraud-scorer", names.LABEL_UID: "11111111-2222-4333-8444-555555555555"}
    name = _foreign(raw, "fraud-scorer", other)
    before = _fingerprint(emulator, name)
    outcome = await reconcile_object(backend, _body(), DEFAULTS, now="t0")
    assert _ready(outcome)["reason"] == "NotOwned" and outcome.permanent
    for policy in ("Delete", "Abandon"):
        assert "does not own" in await finalize_object(backend, _body(deletionPolicy=policy), DEFAULTS)
    assert _fingerprint(emulator, name) == before and _writes_to(emulator, name) == ["CreateService", "SetIamPolicy"]


@pytest.mark.parametrize("policy", ["Delete", "Abandon"])
async def test_deletion_with_the_service_already_gone_completes(
        backend: CloudRun, emulator: Emulator, raw: run_v2.ServicesClient, policy: str) -> None:
    body = _body(deletionPolicy=policy)
    done = await _until_done(backend, emulator, body)
    # Someone deleted it in the console.
    raw.delete_service(name=done.status["service"]).result(timeout=10)  # type: ignore[no-untyped-call]
    emulator.control.clear_calls()
    message = await finalize_object(backend, body, DEFAULTS)
    assert "already gone" in message
    assert [c.method for c in emulator.control.calls] == ["GetService"]  # no write, no retry


async def test_deletion_of_an_object_that_never_created_anything_completes(
        backend: CloudRun, emulator: Emulator) -> None:
    """A spec that never validated, and one whose create Cloud Run refused (permission denied)."""
    invalid = _body(traffic=[{"percent": 10}])
    assert "never validated" in await finalize_object(backend, invalid, DEFAULTS)
    refused = _body()
    emulator.control.fail_next("CreateService", grpc.StatusCode.PERMISSION_DENIED,
                               message="Permission 'run.services.create' denied")
    assert (await reconcile_object(backend, refused, DEFAULTS, now="t0")).permanent
    assert "already gone" in await finalize_object(backend, refused, DEFAULTS)
    assert not emulator.state.services


async def test_abandon_strips_ownership_and_nothing_else(
        backend: CloudRun, emulator: Emulator, raw: run_v2.ServicesClient) -> None:
    body = _body(deletionPolicy="Abandon", labels={"team": "ml"}, access={"invokers": [APP]})
    done = await _until_done(backend, emulator, body)
    name = done.status["service"]
    before = emulator.state.services[name]
    policy_before = emulator.state.policies[name].SerializeToString()
    revisions = sorted(r for r in emulator.state.revisions if r.startswith(name + "/"))
    assert (await finalize_object(backend, body, DEFAULTS)).startswith("abandoned")
    after = emulator.state.services[name]
    assert dict(after.labels) == {"team": "ml"}  # every ownership label gone, the user's kept
    assert not set(after.labels) & set(names.OWNERSHIP_LABELS)
    assert after.template == before.template and list(after.traffic) == list(before.traffic)
    assert sorted(r for r in emulator.state.revisions if r.startswith(name + "/")) == revisions
    assert emulator.state.policies[name].SerializeToString() == policy_before  # invokers keep working
    # Abandoned means abandoned: an object recreated under the same name does not take it back.
    again = await reconcile_object(backend, _body(uid="0b0e6b2e-1111-4c1a-9a55-0000000000bb"), DEFAULTS, now="t1")
    assert _ready(again)["reason"] == "NotOwned"
    assert "does not own" in await finalize_object(backend, body, DEFAULTS)
    assert name in emulator.state.services


@pytest.mark.parametrize(("method", "code"), [
    ("DeleteService", grpc.StatusCode.PERMISSION_DENIED), ("DeleteService", grpc.StatusCode.UNAVAILABLE),
    ("GetService", grpc.StatusCode.PERMISSION_DENIED)])  # (the client itself retries a GetService UNAVAILABLE)
async def test_b037_a_failed_delete_keeps_the_finalizer(
        backend: CloudRun, emulator: Emulator, shared_dir: Path, method: str, code: grpc.StatusCode) -> None:
    """B-037: any failure to read or delete raises (the handler turns it into kopf.TemporaryError,
    so the finalizer stays); a read that fails is never taken for 'already gone'."""
    assert "finalizer" in (shared_dir / "cases" / "bugs" / "037-kopf-permanent-error-in-delete-releases-finalizer.md"
                           ).read_text()
    body = _body()
    done = await _until_done(backend, emulator, body)
    emulator.control.fail_next(method, code, count=1)
    with pytest.raises(BackendError):
        await finalize_object(backend, body, DEFAULTS)
    assert done.status["service"] in emulator.state.services
    assert (await finalize_object(backend, body, DEFAULTS)).startswith("deleted")
    assert done.status["service"] not in emulator.state.services


async def test_b037_the_delete_handler_raises_temporary_error_never_permanent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kopf shell: a BackendError from finalize_object becomes kopf.TemporaryError (the finalizer
    stays and kopf retries with the operator's backoff), whatever the error's class."""
    import kopf

    from tfms.backends.errors import Permanent
    from tfms.handlers import operator as handlers
    from tfms.handlers.config import OperatorConfig

    class Refusing:
        async def get_service(self, name: str) -> dict[str, Any]:
            raise Permanent(f"get {name}: Permission 'run.services.get' denied", "PermissionDenied")

    class Snapshots:
        def reader(self, fresh: bool = False) -> Refusing:
            return Refusing()

    import asyncio

    warned: list[str] = []
    monkeypatch.setattr(kopf, "warn", lambda body, *, reason, message: warned.append(reason))
    memo = kopf.Memo(config=OperatorConfig(retry_initial=2.0, retry_max=300.0), snapshots=Snapshots(),
                     passes=asyncio.Semaphore(1))
    body = kopf.Body(cast(Any, _body()))
    delete = cast(Any, handlers.delete)  # kopf's decorator returns the function itself
    with pytest.raises(kopf.TemporaryError) as caught:
        await delete(body=body, memo=memo, retry=3)
    assert caught.value.delay is not None and 0 < caught.value.delay <= 300
    assert warned == ["DeleteFailed"]
