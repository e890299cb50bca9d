"""The rollout cases from ../shared/cases, done the tfms way: a canary strategy moves traffic
by itself, with gates, and the user's spec never changes during the rollout.

The same intents as tests/integration/test_cases_inputs.py (which writes each split by hand):
here only the model changes and `tfms apply` / the rollout actions do the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import base_object
from tfms.api.validation import parse
from tfms.cli.apply import Result, apply_all
from tfms.emulator import Emulator
from tfms.plan.convergence import Phase
from tfms.plan.rollout import Action

GATED = {"strategy": "canary", "interval": "10ms", "manualGates": True}


def _case(shared_dir: Path, prefix: str) -> list[Any]:
    (path,) = (shared_dir / "cases" / "inputs").glob(f"{prefix}-*.yaml")
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _bug(shared_dir: Path, prefix: str) -> str:
    (path,) = (shared_dir / "cases" / "bugs").glob(f"{prefix}-*.md")
    return path.read_text()


def _spec(name: str, model: dict[str, Any], steps: list[int], **rollout: Any) -> Any:
    obj = base_object(model=model, rollout={**GATED, "steps": steps, **rollout})
    obj["metadata"]["name"] = name
    return parse(obj)


async def _apply(emulator: Emulator, svc: Any, action: Action | None = None) -> Result:
    (result,) = await apply_all([svc], emulator.address, interval=0.01, timeout=30, action=action)
    return result


def _split(result: Result) -> dict[str, tuple[int, str]]:
    """revision short name -> (percent, tag) as Cloud Run serves it."""
    live = result.live or {}
    return {str(t.get("revision", "")).rsplit("/", 1)[-1]: (int(t.get("percent", 0)), str(t.get("tag", "")))
            for t in live.get("trafficStatuses", [])}


def _ready_revision(result: Result) -> str:
    return str((result.live or {})["latestReadyRevision"]).rsplit("/", 1)[-1]


def _traffic_writes(emulator: Emulator, service: str) -> list[dict[str, int]]:
    out = []
    for call in emulator.control.calls:
        request = call.request
        if (call.method == "CreateService" and request.service_id == service) or (
                call.method == "UpdateService" and request.service.name.endswith(f"/services/{service}")):
            out.append({t.revision.rsplit("/", 1)[-1]: t.percent for t in request.service.traffic})
    return out


async def test_i001_i002_i003_canary_10_then_back_to_0_then_promoted(emulator: Emulator, shared_dir: Path) -> None:
    """KServe's canaryTrafficPercent 10 (I-001), pinned to 0 (I-002), removed = promote (I-003)."""
    canary_doc, pinned_doc, promote_doc = (_case(shared_dir, p)[0] for p in ("001", "002", "003"))
    percent = canary_doc["spec"]["predictor"]["canaryTrafficPercent"]
    new_uri = canary_doc["spec"]["predictor"]["tensorflow"]["storageUri"]
    old = {"name": "flowers", "basePath": "gs://example-bucket/models/tensorflow/flowers"}
    new = {"name": "flowers", "basePath": new_uri}
    stable = _ready_revision(await _apply(emulator, _spec("my-model", old, [percent, 100])))

    at_10 = await _apply(emulator, _spec("my-model", new, [percent, 100]))
    canary = _ready_revision(at_10)
    assert at_10.state.reason == "RolloutPaused"  # the gate before 100% holds the I-001 split
    assert _split(at_10) == {stable: (90, "stable"), canary: (10, "canary")}

    assert pinned_doc["spec"]["predictor"]["canaryTrafficPercent"] == 0  # I-002: everything back to stable
    aborted = await _apply(emulator, _spec("my-model", new, [percent, 100]), Action.ABORT)
    assert aborted.state.phase is Phase.FAILED and aborted.state.reason == "RolloutAborted"
    assert _split(aborted) == {stable: (100, "stable")}

    assert "canaryTrafficPercent" not in promote_doc["spec"]["predictor"]  # I-003: promotion, with a rollback target
    restarted = await _apply(emulator, _spec("my-model", {**new, "version": 2}, [percent, 100]))
    candidate = _ready_revision(restarted)
    promoted = await _apply(emulator, _spec("my-model", {**new, "version": 2}, [percent, 100]), Action.PROMOTE)
    assert promoted.state.phase is Phase.READY, promoted.state
    assert _split(promoted) == {candidate: (100, "stable"), stable: (0, "prev")}
    assert canary not in str(promoted.live)  # the aborted candidate left no target behind


async def test_i006_i008_canary_80_20_and_50_50_with_tag_urls(emulator: Emulator, shared_dir: Path) -> None:
    """Knative's v1 80 / v2 20 (I-006) and current 50 / candidate 50 (I-008 C) as canary steps,
    each revision with its own tag URL."""
    (i006,) = _case(shared_dir, "006")
    i008 = _case(shared_dir, "008")
    assert [t["percent"] for t in i006["spec"]["traffic"]] == [80, 20, 0]
    assert [t["percent"] for t in i008[2]["spec"]["traffic"]] == [50, 50, 0]
    model = {"name": "greeter", "basePath": "gs://example-bucket/m"}
    v1 = _ready_revision(await _apply(emulator, _spec("greeter", {**model, "version": 1}, [20, 50, 100])))
    at_20 = await _apply(emulator, _spec("greeter", {**model, "version": 2}, [20, 50, 100]))
    v2 = _ready_revision(at_20)
    assert _split(at_20) == {v1: (80, "stable"), v2: (20, "canary")}
    uris = {t["tag"]: t["uri"] for t in (at_20.live or {})["trafficStatuses"]}
    assert set(uris) == {"stable", "canary"} and all(u.startswith(f"https://{t}---greeter-") for t, u in uris.items())
    at_50 = await _apply(emulator, _spec("greeter", {**model, "version": 2}, [20, 50, 100]), Action.RESUME)
    assert at_50.state.reason == "RolloutPaused"
    assert _split(at_50) == {v1: (50, "stable"), v2: (50, "canary")}
    done = await _apply(emulator, _spec("greeter", {**model, "version": 2}, [20, 50, 100]), Action.RESUME)
    assert done.state.phase is Phase.READY and _split(done) == {v2: (100, "stable"), v1: (0, "prev")}


async def test_i013_a_new_revision_is_dark_until_ready(emulator: Emulator, shared_dir: Path) -> None:
    """Terraform's 'deploy with a 0% tag' (I-013): tfms's first write of a canary gives it 0%
    under its tag, before any traffic moves."""
    (doc,) = _case(shared_dir, "013")
    assert [t["percent"] for t in doc["terraform_resource"]["attributes"]["traffic"]] == [100, 0]
    model = {"name": "m", "basePath": "gs://example-bucket/m"}
    stable = _ready_revision(await _apply(emulator, _spec("my-service", {**model, "version": 1}, [10, 100])))
    await _apply(emulator, _spec("my-service", {**model, "version": 2}, [10, 100]))
    writes = _traffic_writes(emulator, "my-service")
    dark = writes[1]
    assert sorted(dark.values()) == [0, 100] and dark[stable] == 100  # the new revision written at 0%


async def test_i021_version_labels_rolled_out_as_a_canary(emulator: Emulator, shared_dir: Path) -> None:
    """TF Serving's stable 42 / canary 43 labels (I-021 stage A), promoted to 43 (stage B)."""
    (doc,) = _case(shared_dir, "021")
    cfg = doc["stage_a_canary"]["model_config_list"]["config"][0]
    labels = cfg["version_labels"]
    model = {"name": cfg["name"], "basePath": cfg["base_path"]}
    r42 = _ready_revision(await _apply(emulator, _spec("example-model", {**model, "version": labels["stable"]},
                                                       [10, 100])))
    stage_a = await _apply(emulator, _spec("example-model", {**model, "version": labels["canary"]}, [10, 100]))
    r43 = _ready_revision(stage_a)
    assert _split(stage_a) == {r42: (90, "stable"), r43: (10, "canary")}
    assert doc["stage_b_promote"]["model_config_list"]["config"][0]["version_labels"] == {"stable": 43, "canary": 43}
    stage_b = await _apply(emulator, _spec("example-model", {**model, "version": 43}, [10, 100]), Action.PROMOTE)
    assert _split(stage_b) == {r43: (100, "stable"), r42: (0, "prev")}


async def test_b020_first_canary_gets_100_and_an_older_revision_never_returns(emulator: Emulator,
                                                                              shared_dir: Path) -> None:
    assert "the sole\nrevision gets 100%" in _bug(shared_dir, "020")
    model = {"name": "m", "basePath": "gs://example-bucket/m"}
    first = await _apply(emulator, _spec("b020", {**model, "version": 1}, [10, 100], manualGates=False))
    r1 = _ready_revision(first)
    assert first.state.phase is Phase.READY and _split(first) == {r1: (100, "stable")}  # no canary of nothing
    r2 = _ready_revision(await _apply(emulator, _spec("b020", {**model, "version": 2}, [10, 100],
                                                      manualGates=False)))
    third = await _apply(emulator, _spec("b020", {**model, "version": 3}, [10, 100], manualGates=False))
    assert third.state.phase is Phase.READY
    writes = _traffic_writes(emulator, "b020")
    since_r2 = writes[writes.index(next(w for w in writes if w.get(r2) == 100)):]
    assert all(not w.get(r1) for w in since_r2), writes  # 00001 never serves again once 00002 took over
    assert _split(third)[r2] == (0, "prev")


async def test_b021_a_candidate_that_never_gets_ready_gets_no_traffic(emulator: Emulator, shared_dir: Path) -> None:
    assert "no percentage increase" in _bug(shared_dir, "021")
    model = {"name": "m", "basePath": "gs://example-bucket/m"}
    stable = _ready_revision(await _apply(emulator, _spec("b021", {**model, "version": 1}, [10, 100])))
    emulator.control.fail_next_revision("HEALTH_CHECK_CONTAINER_ERROR", "CrashLoopBackOff: container exited 1")
    failed = await _apply(emulator, _spec("b021", {**model, "version": 2}, [10, 100]))
    assert failed.state.phase is Phase.FAILED and "CrashLoopBackOff" in failed.state.message, failed.state
    writes = _traffic_writes(emulator, "b021")
    assert all(w.get(stable) == 100 for w in writes[1:]), writes  # stable kept 100% in every write
    assert _split(failed)[stable] == (100, "stable")
