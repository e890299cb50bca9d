"""Every real manifest in ../shared/cases/inputs, expressed as TFModelServices.

Each test reads its case file (to pin the intent it was written against), states the same
intent as one or more TFModelService specs, applies them through the real client to the
emulator, and asserts what Cloud Run ends up doing: which revision gets which percent, which
tags and URLs exist, what is public — or the clear error the case calls for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import base_object
from tfms.api.errors import SpecInvalid
from tfms.api.validation import parse, validate
from tfms.backends.cloudrun import CloudRun
from tfms.plan.convergence import Phase
from tfms.reconcile.retry import Backoff
from tfms.reconcile.service import apply_service, wait_converged
from tfms.render.cloudrun import render_service

FAST = Backoff(attempts=5, initial=0.01, maximum=0.05)


def _case(shared_dir: Path, prefix: str) -> list[Any]:
    (path,) = (shared_dir / "cases" / "inputs").glob(f"{prefix}-*.yaml")
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _svc(name: str, **spec: Any) -> dict[str, Any]:
    obj = base_object(**spec)
    obj["metadata"]["name"] = name
    return obj


async def _apply(backend: CloudRun, obj: dict[str, Any]) -> dict[str, Any]:
    applied = await apply_service(backend, parse(obj), FAST)
    state, live = await wait_converged(backend, applied.rendered, timeout=10, interval=0.01, backoff=FAST)
    assert state.phase is Phase.READY, state
    assert live is not None
    return live


def _split(live: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """revision short name (or 'LATEST') -> (percent, tag), from Cloud Run's traffic statuses."""
    out = {}
    for t in live.get("trafficStatuses", []):
        key = t.get("revision", "").rsplit("/", 1)[-1] or "LATEST"
        out[key if key not in out else f"{key}#{t.get('tag', '')}"] = (int(t.get("percent", 0)), t.get("tag", ""))
    return out


def _tag_uris(live: dict[str, Any]) -> dict[str, str]:
    return {t["tag"]: t["uri"] for t in live.get("trafficStatuses", []) if t.get("tag")}


def _model(base: str, version: int | None = None) -> dict[str, Any]:
    return {"name": "flowers", "basePath": base, **({"version": version} if version else {})}


async def test_i001_i002_i003_kserve_canary_pin_and_promote(backend: CloudRun, shared_dir: Path) -> None:
    """KServe: baseline flowers, canary flowers-2 at 10%, pinned back to 0%, then promoted."""
    canary_doc, pinned_doc, promote_doc = (_case(shared_dir, p)[0] for p in ("001", "002", "003"))
    assert canary_doc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert pinned_doc["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert "canaryTrafficPercent" not in promote_doc["spec"]["predictor"]
    new_uri = canary_doc["spec"]["predictor"]["tensorflow"]["storageUri"]

    baseline = await _apply(backend, _svc("my-model", model=_model("gs://example-bucket/models/tensorflow/flowers")))
    stable = baseline["latestReadyRevision"].rsplit("/", 1)[-1]
    canary_rev = render_service(parse(_svc("my-model", model=_model(new_uri)))).revision

    def step(percent: int) -> dict[str, Any]:
        return _svc("my-model", model=_model(new_uri), traffic=[
            {"revision": stable, "percent": 100 - percent, "tag": "prev"},
            {"latestRevision": True, "percent": percent, "tag": "canary"}])

    live = await _apply(backend, step(10))
    assert _split(live) == {stable: (90, "prev"), "LATEST": (10, "canary")}
    assert live["latestReadyRevision"].endswith(canary_rev)
    live = await _apply(backend, step(0))  # I-002: pinned to 0 = rollback, canary still reachable by tag
    assert _split(live) == {stable: (100, "prev"), "LATEST": (0, "canary")}
    assert set(_tag_uris(live)) == {"prev", "canary"}
    live = await _apply(backend, _svc("my-model", model=_model(new_uri)))  # I-003: promotion
    assert _split(live) == {"LATEST": (100, "")}
    assert live["latestReadyRevision"].endswith(canary_rev)

    # I-001's literal resources (100m CPU, 100Mi) are below Cloud Run's floor: refused up front.
    literal = _svc("my-model", model=_model(new_uri), runtime={"resources": {"cpu": "100m", "memory": "100Mi"}})
    assert {(e.path, e.rule) for e in validate(literal)} == {("spec.runtime.resources.memory", "memory-minimum")}


async def test_i005_i006_i008_knative_pins_and_tags(backend: CloudRun, shared_dir: Path) -> None:
    """Pinned revisions with tags and a 0% `latest` tag, in the three documented shapes."""
    docs = _case(shared_dir, "005") + _case(shared_dir, "006") + _case(shared_dir, "008")
    assert [t.get("percent") for t in docs[1]["spec"]["traffic"]] == [80, 20, 0]

    v1 = await _apply(backend, _svc("greeter", model=_model("gs://example-bucket/m", 1)))
    r1 = v1["latestReadyRevision"].rsplit("/", 1)[-1]
    v2 = await _apply(backend, _svc("greeter", model=_model("gs://example-bucket/m", 2)))
    r2 = v2["latestReadyRevision"].rsplit("/", 1)[-1]

    def pinned(*targets: tuple[str | None, int, str]) -> dict[str, Any]:
        return _svc("greeter", model=_model("gs://example-bucket/m", 2), traffic=[
            ({"revision": rev} if rev else {"latestRevision": True}) | {"percent": p} | ({"tag": tag} if tag else {})
            for rev, p, tag in targets])

    live = await _apply(backend, pinned((r1, 100, "v1"), (r2, 0, "v2"), (None, 0, "latest")))  # I-005
    assert _split(live) == {r1: (100, "v1"), r2: (0, "v2"), "LATEST": (0, "latest")}
    live = await _apply(backend, pinned((r1, 80, "v1"), (r2, 20, "v2"), (None, 0, "latest")))  # I-006
    assert _split(live) == {r1: (80, "v1"), r2: (20, "v2"), "LATEST": (0, "latest")}
    uris = _tag_uris(live)
    assert set(uris) == {"v1", "v2", "latest"}
    assert all(uri.startswith(f"https://{tag}---greeter-") for tag, uri in uris.items())
    live = await _apply(backend, pinned((r1, 50, "current"), (r2, 50, "candidate"), (None, 0, "latest")))  # I-008 C
    assert _split(live) == {r1: (50, "current"), r2: (50, "candidate"), "LATEST": (0, "latest")}
    live = await _apply(backend, pinned((None, 100, "")))  # I-008 A: everything floats to latest
    assert _split(live) == {"LATEST": (100, "")}


def test_i010_gpu_llm_plain_key_refused_secret_ok(shared_dir: Path) -> None:
    (doc,) = _case(shared_dir, "010")
    container = doc["spec"]["template"]["spec"]["containers"][0]
    probe = container["startupProbe"]
    spec: dict[str, Any] = {
        "model": {"name": "llm", "basePath": "/models/llm"},
        "runtime": {
            "image": container["image"],
            "gpu": {"type": "nvidia-l4", "zonalRedundancy": False},
            "resources": {"cpu": "8", "memory": "32Gi"},
            "env": [{"name": e["name"], "value": e["value"]} for e in container["env"]],
            "startupProbe": {k: probe[k] for k in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds",
                                                   "failureThreshold")},
        },
        "scaling": {"maxInstances": 2, "cpuAlwaysAllocated": True},
    }
    errors = validate(_svc("example-llm", **spec))
    assert [(e.path, e.rule) for e in errors] == [("spec.runtime.env[0].value", "env-plain-credential")]
    spec["runtime"]["env"] = [{"name": "NGC_API_KEY", "secretKeyRef": {"secret": "ngc-api-key", "version": "1"}}]
    body = render_service(parse(_svc("example-llm", **spec))).body
    template = body["template"]
    assert template["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert template["gpuZonalRedundancyDisabled"] is True
    assert template["scaling"]["maxInstanceCount"] == 2
    res = template["containers"][0]["resources"]
    assert res["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"} and res["cpuIdle"] is False
    assert template["containers"][0]["env"] == [
        {"name": "NGC_API_KEY", "valueSource": {"secretKeyRef": {"secret": "ngc-api-key", "version": "1"}}}]


def test_i012_unprefixed_revisions_refused_before_any_call(shared_dir: Path) -> None:
    """B-010: Cloud Run requires pinned revision names prefixed by the service name."""
    (doc,) = _case(shared_dir, "012")
    attrs = doc["terraform_resource"]["attributes"]
    traffic = [{"revision": t["revision"], "percent": t["percent"]} for t in attrs["traffic"]]
    obj = _svc(attrs["name"], traffic=traffic)
    with pytest.raises(SpecInvalid) as info:
        parse(obj)
    assert [(e.path, e.rule) for e in info.value.errors] == [
        ("spec.traffic[0].revision", "revision-prefix"), ("spec.traffic[1].revision", "revision-prefix")]
    assert "start with 'my-service-'" in str(info.value)


async def test_i013_deploy_dark_reachable_only_by_tag(backend: CloudRun, shared_dir: Path) -> None:
    (doc,) = _case(shared_dir, "013")
    assert [t["percent"] for t in doc["terraform_resource"]["attributes"]["traffic"]] == [100, 0]
    green = await _apply(backend, _svc("my-service", model=_model("gs://example-bucket/m", 1)))
    stable = green["latestReadyRevision"].rsplit("/", 1)[-1]
    live = await _apply(backend, _svc("my-service", model=_model("gs://example-bucket/m", 2), traffic=[
        {"revision": stable, "percent": 100}, {"latestRevision": True, "percent": 0, "tag": "tag-name"}]))
    dark = live["latestReadyRevision"].rsplit("/", 1)[-1]
    assert dark != stable
    assert _split(live) == {stable: (100, ""), "LATEST": (0, "tag-name")}
    assert _tag_uris(live)["tag-name"].startswith("https://tag-name---my-service-")


# I-016, I-017 and I-018 (public invokers) are IAM cases: tests/integration/test_iam.py.


async def test_i021_version_labels_as_revision_canary(backend: CloudRun, shared_dir: Path) -> None:
    """TF Serving's stable/canary labels become two revisions pinned to versions 42 and 43 with
    tags stable/canary; promotion moves everything to 43."""
    (doc,) = _case(shared_dir, "021")
    cfg = doc["stage_a_canary"]["model_config_list"]["config"][0]
    labels = cfg["version_labels"]
    base = cfg["base_path"]
    model = {"name": cfg["name"], "basePath": base}
    stable = await _apply(backend, _svc("example-model", model={**model, "version": labels["stable"]}))
    r42 = stable["latestReadyRevision"].rsplit("/", 1)[-1]
    live = await _apply(backend, _svc("example-model", model={**model, "version": labels["canary"]}, traffic=[
        {"revision": r42, "percent": 90, "tag": "stable"}, {"latestRevision": True, "percent": 10, "tag": "canary"}]))
    r43 = live["latestReadyRevision"].rsplit("/", 1)[-1]
    assert _split(live) == {r42: (90, "stable"), "LATEST": (10, "canary")}
    env = live["template"]["containers"][0]["env"][0]["value"]
    assert "versions: 43" in env
    promoted = doc["stage_b_promote"]["model_config_list"]["config"][0]["version_labels"]
    assert promoted == {"stable": 43, "canary": 43}
    live = await _apply(backend, _svc("example-model", model={**model, "version": promoted["stable"]}))
    assert _split(live) == {"LATEST": (100, "")} and live["latestReadyRevision"].endswith(r43)


def test_i023_model_name_never_defaults(shared_dir: Path) -> None:
    (doc,) = _case(shared_dir, "023")
    assert "--model_name" not in " ".join(doc["container"]["args"])  # the case's mistake
    body = render_service(parse(_svc("predict", model={"name": "default-free", "basePath": "/tf_models"}))).body
    args = body["template"]["containers"][0]["args"]
    assert "--model_name=default-free" in args and "--rest_api_port=8080" in args and "--port=8500" in args


async def test_i024_kserve_baseline(backend: CloudRun, shared_dir: Path) -> None:
    (doc,) = _case(shared_dir, "024")
    uri = doc["spec"]["predictor"]["model"]["storageUri"]
    live = await _apply(backend, _svc(doc["metadata"]["name"], model={"name": "flowers", "basePath": uri}))
    assert _split(live) == {"LATEST": (100, "")}
    assert live["uri"].startswith("https://flower-sample-")
    assert f"--model_base_path={uri}" in live["template"]["containers"][0]["args"]
