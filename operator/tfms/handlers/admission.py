"""Admission and guardrails in the kopf shell: the TFModelServicePolicy index and the validating
webhook for TFModelService.

The webhook applies the same `validate` and the same guardrail checker as the CLI and the
reconciler, so a refusal at `kubectl apply` reads exactly like one from `tfms validate --policy`.

Failure policy: **Fail**, deliberately. The guardrails are security controls (who may invoke,
public access, images); failing open would admit exactly the specs they exist to stop. The blast
radius is kept small: the webhook matches only TFModelService CREATE and UPDATE (never deletes,
never other resources, never the status subresource), and an UPDATE that leaves the spec as it is
(kopf's own finalizer and annotation patches, deletion) is always allowed, so an outage or a new
policy can never wedge a deletion. The reconciler enforces the same policies again, so nothing a
webhook misconfiguration lets through ever reaches Cloud Run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

from tfms.api import names
from tfms.api.defaults import Defaults
from tfms.api.errors import FieldError
from tfms.api.guardrails import check_all
from tfms.api.validation import parse, validate

POLICY_RESOURCE = (names.GROUP, names.VERSION, names.POLICY_PLURAL)
RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
_ALL = "all"  # the index's one key: every policy applies cluster-wide (scoping is in the policy)


@kopf.index(*POLICY_RESOURCE)
def tfms_policies(name: str, spec: Mapping[str, Any], **_: Any) -> dict[str, dict[str, Any]]:
    """Every TFModelServicePolicy, kept current by kopf (filled before any other handler runs)."""
    return {_ALL: {"metadata": {"name": name}, "spec": _thaw(spec)}}


def policies_from(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The policies from a handler's kwargs (kopf passes every index by its function's name)."""
    index = kwargs.get("tfms_policies")
    if index is None:
        return []
    return sorted((dict(p) for p in index.get(_ALL, [])), key=lambda p: str(p["metadata"]["name"]))


def admission_errors(body: Mapping[str, Any], old: Mapping[str, Any] | None, policies: list[dict[str, Any]],
                     defaults: Defaults) -> list[FieldError]:
    """What admission refuses: schema and Cloud Run rules, then the guardrails. An update that leaves
    the spec unchanged (finalizers, annotations, deletion) is never refused."""
    if old is not None and old.get("spec") == body.get("spec"):
        return []
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("deletionTimestamp"):
        return []
    errors = validate(body, defaults)
    if errors or not policies:
        return errors
    return check_all(policies, parse(body, defaults))


def configure_admission(settings: kopf.OperatorSettings, env: Mapping[str, str] | None = None) -> None:
    """Serve the webhook when TFMS_WEBHOOK_PORT is set: with TLS from TFMS_WEBHOOK_CERT/KEY files (the
    manifests mount a Secret), else a self-signed certificate for TFMS_WEBHOOK_HOST; with
    TFMS_WEBHOOK_MANAGED=1 kopf also registers the ValidatingWebhookConfiguration itself (tests,
    development); in production manifests/operator/webhook.yaml declares it."""
    env = os.environ if env is None else env
    port = env.get("TFMS_WEBHOOK_PORT")
    if not port:
        return
    cert, key = env.get("TFMS_WEBHOOK_CERT"), env.get("TFMS_WEBHOOK_KEY")
    settings.admission.server = ReviewCheckingWebhookServer(
        addr=env.get("TFMS_WEBHOOK_ADDR", "0.0.0.0"), port=int(port), host=env.get("TFMS_WEBHOOK_HOST") or None,
        certfile=Path(cert) if cert else None, pkeyfile=Path(key) if key else None,
        cadump=env.get("TFMS_WEBHOOK_CADUMP") or None)
    if env.get("TFMS_WEBHOOK_MANAGED", "") in ("1", "true"):
        settings.admission.managed = names.WEBHOOK_CONFIGURATION


def review_problem(review: Any) -> str:
    """Why `review` is no admission.k8s.io AdmissionReview request kopf can answer ("" if it is one)."""
    if not isinstance(review, Mapping):
        return "not an AdmissionReview: expected a JSON object"
    request = review.get("request")
    if not isinstance(request, Mapping):
        return "not an AdmissionReview: .request is missing"
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        return "not an AdmissionReview: .request.uid is missing"
    if not isinstance(request.get("operation"), str):
        return "not an AdmissionReview: .request.operation is missing"
    resource = request.get("resource")
    if not isinstance(resource, Mapping) or not all(isinstance(resource.get(k), str)
                                                    for k in ("group", "version", "resource")):
        return "not an AdmissionReview: .request.resource needs group, version and resource"
    return ""


class ReviewCheckingWebhookServer(kopf.WebhookServer):
    """kopf's HTTPS webhook server, answering a body that is no AdmissionReview request with 400
    Bad Request and the reason. kopf itself reads `request.resource` unchecked, so `{}` would get a
    bare 500 and a traceback in the log."""

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async def checked(request: Any, **kwargs: Any) -> Any:
            problem = review_problem(request)
            if problem:
                raise aiohttp.web.HTTPBadRequest(reason=problem)
            return await fn(request, **kwargs)

        async for client_config in super().__call__(checked):
            yield client_config


def validate_tfmodelservice(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    old = kwargs.get("old")
    config = memo.get("config")
    defaults = config.defaults if config is not None else Defaults.from_env(os.environ)
    errors = admission_errors(_thaw(body), _thaw(old) if old else None, policies_from(kwargs), defaults)
    if errors:
        raise kopf.AdmissionError(f"{len(errors)} invalid field(s): " + "; ".join(str(e) for e in errors),
                                  code=422)


def register_webhook(registry: kopf.OperatorRegistry | None = None) -> None:
    """Register the validate handler: fail closed (`ignore_failures=False`), creates and updates only."""
    kopf.on.validate(*RESOURCE, id=names.WEBHOOK_ID, operations=["CREATE", "UPDATE"], ignore_failures=False,
                     registry=registry)(validate_tfmodelservice)


# kopf refuses to start with admission handlers but no server, so the handler exists only where the
# webhook is served (TFMS_WEBHOOK_PORT, as manifests/operator/deployment.yaml sets it).
if os.environ.get("TFMS_WEBHOOK_PORT"):
    register_webhook()


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value
