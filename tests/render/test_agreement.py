"""The three `tfms render` formats describe the same service.

Each format's document is normalised to one comparable `Intent` (image, command, args, env
with secret refs, resources, probes, scale bounds, concurrency, timeout, revision name,
traffic); for every golden case and a set of generated variants the three must be equal,
and equal to what the spec asked for. A format that refuses a spec must be listed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import base_object
from tfms.api.model import TFModelService
from tfms.api.validation import parse
from tfms.render import formats
from tfms.render.cloudrun import render_service
from tfms.render.formats import FORMATS, render_document
from tfms.render.gcloud import SECRETS
from tfms.render.knative import KnativeUnsupported

HERE = Path(__file__).parent
IMAGE = "tensorflow/serving:2.19.0"
BASE_PATH = "gs://example-bucket/models/fraud"


def _variant(metadata: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj = base_object(**spec)
    obj["metadata"].update(metadata or {})
    return obj


# Generated variants: each one exercises a field the golden cases leave at its default.
VARIANTS: dict[str, dict[str, Any]] = {
    "base": _variant(),
    "pinned-version-and-args": _variant(
        model={"name": "fraud", "basePath": BASE_PATH, "version": 7},
        runtime={"image": IMAGE, "args": ["--rest_api_timeout_in_ms=5000"]}),
    "env-and-secrets": _variant(runtime={"image": IMAGE, "env": [
        {"name": "MODE", "value": "fast"},
        {"name": "DB_PASSWORD", "secretKeyRef": {"secret": "db-password"}},
        {"name": "API_TOKEN", "secretKeyRef": {"secret": "api-token", "version": "4"}}]}),
    "cross-project-secrets": _variant(runtime={"image": IMAGE, "env": [
        {"name": "API_TOKEN", "secretKeyRef": {"secret": "api-token", "version": "1"}},
        {"name": "PARTNER_TOKEN", "secretKeyRef": {"secret": "projects/partner-a/secrets/api-token"}},
        {"name": "OTHER_TOKEN", "secretKeyRef": {"secret": "projects/partner-b/secrets/api-token", "version": "2"}}]}),
    "batching": _variant(runtime={"image": IMAGE, "resources": {"cpu": "4", "memory": "8Gi"},
                                  "batching": {"maxBatchSize": 8, "batchTimeoutMicros": 1000}}),
    "fractional-cpu": _variant(runtime={"image": IMAGE, "resources": {"cpu": "0.5", "memory": "512Mi"}}),
    "scaling-and-billing": _variant(scaling={"minInstances": 2, "maxInstances": 5, "concurrency": 10,
                                             "timeoutSeconds": 600, "cpuAlwaysAllocated": True,
                                             "startupCpuBoost": False}),
    "three-way-split": _variant(traffic=[
        {"revision": "fraud-scorer-aaaaaaaa", "percent": 50, "tag": "stable"},
        {"revision": "fraud-scorer-bbbbbbbb", "percent": 30},
        {"latestRevision": True, "percent": 20, "tag": "canary"}]),
    "single-target-no-percent": _variant(traffic=[{"latestRevision": True, "tag": "latest"}]),  # B-001
    "internal-public": _variant(access={"ingress": "internal", "public": True,
                                        "invokers": ["serviceAccount:app@example-project.iam.gserviceaccount.com"]}),
    "liveness-probe": _variant(runtime={"image": IMAGE, "livenessProbe": {"periodSeconds": 60}}),
    "labels-annotations-uid": _variant(metadata={"uid": "0f5e2c1a-9d3b-4c7e-8a61-2b4f6d8e0c13"},
                                       labels={"team": "ml-platform"},
                                       annotations={"example.com/owner": "ml-platform"}),
    "service-account": _variant(serviceAccount="fraud-sa@example-project.iam.gserviceaccount.com"),
    "gpu": _variant(runtime={"image": f"{IMAGE}-gpu", "gpu": {"type": "nvidia-l4", "zonalRedundancy": False}}),
    "timeout-over-600": _variant(scaling={"timeoutSeconds": 900}),
}


def _services() -> dict[str, TFModelService]:
    out = {case.stem: parse(yaml.safe_load(case.read_text())) for case in sorted((HERE / "cases").glob("*.yaml"))}
    out.update({f"variant:{name}": parse(obj) for name, obj in VARIANTS.items()})
    return out


SERVICES = _services()
# Specs plain Knative cannot express (see tfms.render.knative); every other one must render.
KNATIVE_REFUSES = frozenset({
    "gpu-batching-secrets", "variant:gpu", "variant:timeout-over-600", "variant:cross-project-secrets",
})


@dataclass(frozen=True)
class Intent:
    """What every format must agree on, in one shape."""

    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, tuple[str, ...]], ...]  # (name, ("value", v)) or (name, ("secret", path, version))
    limits: tuple[tuple[str, str], ...]
    probes: tuple[tuple[str, str], ...]  # (kind, canonical JSON)
    min_scale: int
    max_scale: int
    concurrency: int
    timeout_seconds: int
    revision: str
    traffic: tuple[tuple[bool, str, int, str], ...]  # (latest, revision, percent, tag)


def _probes(container: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    kinds = ("startupProbe", "livenessProbe", "readinessProbe")
    return tuple((k, json.dumps(container[k], sort_keys=True)) for k in kinds if k in container)


def _env(container: dict[str, Any], secret_of: Callable[[dict[str, Any]], tuple[str, str]] | None,
         ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out: list[tuple[str, tuple[str, ...]]] = []
    for var in container.get("env", []):
        if "value" in var:
            out.append((var["name"], ("value", var["value"])))
        else:
            assert secret_of is not None
            out.append((var["name"], ("secret", *secret_of(var))))
    return tuple(out)


def from_cloudrun(doc: dict[str, Any]) -> Intent:
    template = doc["template"]
    container = template["containers"][0]

    def secret(var: dict[str, Any]) -> tuple[str, str]:
        ref = var["valueSource"]["secretKeyRef"]
        return ref["secret"], ref["version"]

    return Intent(
        image=container["image"], command=tuple(container["command"]), args=tuple(container["args"]),
        env=_env(container, secret), limits=tuple(sorted(container["resources"]["limits"].items())),
        probes=_probes(container),
        min_scale=template["scaling"]["minInstanceCount"], max_scale=template["scaling"]["maxInstanceCount"],
        concurrency=template["maxInstanceRequestConcurrency"], timeout_seconds=int(template["timeout"][:-1]),
        revision=template["revision"],
        traffic=tuple((t["type"].endswith("_LATEST"), t.get("revision", ""), t["percent"], t.get("tag", ""))
                      for t in doc["traffic"]),
    )


def _from_knative_shape(doc: dict[str, Any], min_key: str, max_key: str) -> Intent:
    metadata, spec = doc["spec"]["template"]["metadata"], doc["spec"]["template"]["spec"]
    annotations = metadata["annotations"]
    # Cloud Run v1 names other projects' secrets by an alias mapped in an annotation.
    aliases = dict(item.split(":", 1) for item in annotations[SECRETS].split(",")) if SECRETS in annotations else {}
    container = spec["containers"][0]

    def secret(var: dict[str, Any]) -> tuple[str, str]:
        ref = var["valueFrom"]["secretKeyRef"]
        return aliases.get(ref["name"], ref["name"]), ref["key"]

    return Intent(
        image=container["image"], command=tuple(container["command"]), args=tuple(container["args"]),
        env=_env(container, secret), limits=tuple(sorted(container["resources"]["limits"].items())),
        probes=_probes(container),
        min_scale=int(annotations[min_key]), max_scale=int(annotations[max_key]),
        concurrency=spec["containerConcurrency"], timeout_seconds=spec["timeoutSeconds"],
        revision=metadata["name"],
        traffic=tuple((t["latestRevision"], t.get("revisionName", ""), t["percent"], t.get("tag", ""))
                      for t in doc["spec"]["traffic"]),
    )


NORMALISERS: dict[str, Callable[[dict[str, Any]], Intent]] = {
    "cloudrun": from_cloudrun,
    "gcloud": lambda doc: _from_knative_shape(doc, "autoscaling.knative.dev/minScale",
                                              "autoscaling.knative.dev/maxScale"),
    "knative": lambda doc: _from_knative_shape(doc, "autoscaling.knative.dev/min-scale",
                                               "autoscaling.knative.dev/max-scale"),
}


def test_every_format_is_compared() -> None:
    assert tuple(NORMALISERS) == FORMATS
    assert set(SERVICES) >= KNATIVE_REFUSES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_formats_agree(name: str) -> None:
    svc = SERVICES[name]
    intents: dict[str, Intent] = {}
    for fmt in FORMATS:
        if fmt == "knative" and name in KNATIVE_REFUSES:
            with pytest.raises(KnativeUnsupported):
                render_document(svc, fmt)
            continue
        intents[fmt] = NORMALISERS[fmt](render_document(svc, fmt))
    reference = intents["cloudrun"]
    for fmt, intent in intents.items():
        assert intent == reference, fmt


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_agreed_intent_is_the_spec(name: str) -> None:
    """Agreeing is not enough: the shared intent is what the spec asked for."""
    svc = SERVICES[name]
    intent = from_cloudrun(render_document(svc, "cloudrun"))
    traffic = tuple((t.latest, t.revision, t.percent, t.tag) for t in svc.traffic) or ((True, "", 100, ""),)
    assert (intent.image, intent.min_scale, intent.max_scale, intent.concurrency, intent.timeout_seconds) == (
        svc.runtime.image, svc.scaling.min_instances, svc.scaling.max_instances, svc.scaling.concurrency,
        svc.scaling.timeout_seconds)
    assert intent.traffic == traffic
    assert intent.revision == render_service(svc).revision
    assert dict(intent.limits)["cpu"] == svc.runtime.cpu and dict(intent.limits)["memory"] == svc.runtime.memory
    assert ("nvidia.com/gpu" in dict(intent.limits)) == (svc.runtime.gpu is not None)
    user_env = {name: value for name, value in intent.env if not name.startswith("TFMS_")}
    assert list(user_env) == [var.name for var in svc.runtime.env]


def test_render_document_cloudrun_is_what_the_cli_printed() -> None:
    svc = SERVICES["minimal"]
    rendered = render_service(svc)
    assert render_document(svc, "cloudrun") == {"name": rendered.name, **rendered.body}


def test_render_document_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match=r"unknown render format 'helm'; choose one of cloudrun, gcloud, knative"):
        render_document(SERVICES["minimal"], "helm")


def test_registry_lists_every_format() -> None:
    assert tuple(formats._RENDERERS) == FORMATS
