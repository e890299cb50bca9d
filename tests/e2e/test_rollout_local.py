"""Canary rollouts in local mode with real requests: real model servers behind the router, the
router's own per-revision metrics judged at every step, promotion and automatic rollback.

A load thread predicts continuously through the service URL while `tfms apply` (the same code
path as the CLI) walks the rollout; the figures each step was judged on are printed as a
timeline (pytest -s shows them).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, base_object
from tests.runtime.tfmodels import zoo
from tfms.api.validation import parse
from tfms.backends.metrics import LocalMetrics
from tfms.cli.apply import apply_all
from tfms.emulator import Emulator, EmulatorConfig
from tfms.emulator.local import LocalExecutor
from tfms.plan.convergence import Phase
from tfms.plan.rollout import ANNOTATION, RolloutState

pytestmark = pytest.mark.slow
HPT = REPO / "manifests" / "examples" / "models" / "half_plus_two"
REVISION_HEADER = "X-Tfms-Revision"


@pytest.fixture(scope="module")
def local() -> Iterator[Emulator]:
    executor = LocalExecutor()
    emulator = Emulator(EmulatorConfig(), executor=executor)
    emulator.start("127.0.0.1", 0, rest_port=0)
    try:
        yield emulator
    finally:
        emulator.stop()
        executor.close()


@dataclass
class Load:
    """Predicts through `url` until stopped; counts answers per revision and status."""

    url: str
    seen: Counter[tuple[str, int]] = field(default_factory=Counter)
    values: Counter[float] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _one(self) -> None:
        req = urllib.request.Request(self.url, data=b'{"instances": [1.0]}', method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                self.seen[(resp.headers.get(REVISION_HEADER, ""), resp.status)] += 1
                self.values[json.loads(resp.read())["predictions"][0]] += 1
        except urllib.error.HTTPError as err:
            self.seen[(err.headers.get(REVISION_HEADER, ""), err.code)] += 1

    def run(self) -> None:
        while not self._stop.wait(0.02):
            self._one()

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)


def _spec(name: str, base: Path, version: int, analysis: dict[str, Any], steps: list[int]) -> Any:
    obj = base_object(
        model={"name": "half_plus_two", "basePath": str(base), "version": version},
        rollout={"strategy": "canary", "steps": steps, "interval": "4s", "analysis": analysis},
        scaling={"minInstances": 1},
    )
    obj["metadata"]["name"] = name
    obj["spec"]["project"] = "tfms-local"
    return parse(obj)


def _timeline(emulator: Emulator, service: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(phase, weight, analysis figures) of every rollout state written, in order."""
    out = []
    for call in emulator.control.calls:
        if call.method in ("CreateService", "UpdateService") and service in call.request.service.name:
            raw = call.request.service.annotations.get(ANNOTATION)
            state = RolloutState.from_json(raw) if raw else None
            if state is not None:
                out.append((state.phase.value, state.weight, dict(state.analysis or {})))
    return out


def _print_timeline(title: str, timeline: list[tuple[str, int, dict[str, Any]]]) -> None:
    print(f"\n{title}\n  phase        weight  requests  error rate  p99 ms")
    for phase, weight, figures in timeline:
        print(f"  {phase:<12} {weight:>5}%  {figures.get('requests', '-')!s:>8}  "
              f"{figures.get('errorRate', '-')!s:>10}  {figures.get('p99Ms', '-')!s:>6}")


async def test_rollout_of_version_2_steps_with_real_requests_and_promotes(local: Emulator) -> None:
    metrics = LocalMetrics(local.rest_url)
    analysis = {"maxErrorRate": 0.05, "maxP99LatencyMs": 2000, "minRequestCount": 5}
    (first,) = await apply_all([_spec("hpt-canary", HPT, 1, analysis, [20, 50, 100])], local.address,
                               interval=0.2, timeout=240, metrics=metrics)
    assert first.state.phase is Phase.READY, first.state
    url = str((first.live or {})["uri"]) + "/v1/models/half_plus_two:predict"
    stable = str((first.live or {})["latestReadyRevision"]).rsplit("/", 1)[-1]
    with Load(url) as load:
        (result,) = await apply_all([_spec("hpt-canary", HPT, 2, analysis, [20, 50, 100])], local.address,
                                    interval=0.2, timeout=240, metrics=metrics)
    assert result.state.phase is Phase.READY, result.state
    canary = str((result.live or {})["latestReadyRevision"]).rsplit("/", 1)[-1]
    timeline = _timeline(local, "hpt-canary")
    _print_timeline("rollout of version 2 (promoted)", timeline)
    # One Cloud Run write per transition (a held step writes nothing): dark, each step, promoted.
    assert [(phase, w) for phase, w, _ in timeline] == [
        ("Progressing", 0), ("Progressing", 20), ("Progressing", 50), ("Succeeded", 100)]
    judged = [f for phase, w, f in timeline if phase == "Progressing" and w in (20, 50) and f]
    assert judged and all(f["requests"] >= 5 and f["errorRate"] == 0 for f in judged), judged
    # Real requests reached both revisions, and none failed.
    assert {rev for rev, _ in load.seen} == {stable, canary}, load.seen
    assert {code for _, code in load.seen} == {200}, load.seen
    assert set(load.values) == {2.5, 3.5}  # version 1: 0.5x+2, version 2: 0.5x+3
    statuses = {(str(t.get("revision", "")).rsplit("/", 1)[-1], t.get("percent", 0), t.get("tag"))
                for t in (result.live or {})["trafficStatuses"]}
    assert statuses == {(canary, 100, "stable"), (stable, 0, "prev")}


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1: half_plus_two; version 2: the same answers, ~100 ms slower per call."""
    base = tmp_path_factory.mktemp("slow") / "half_plus_two"
    shutil.copytree(HPT / "1", base / "1")
    shutil.copytree(zoo() / "slow" / "1", base / "2")
    return base


async def test_slow_version_is_rolled_back_by_itself(local: Emulator, slow_model: Path) -> None:
    metrics = LocalMetrics(local.rest_url)
    analysis = {"maxErrorRate": 0.05, "maxP99LatencyMs": 50, "minRequestCount": 5}
    (first,) = await apply_all([_spec("hpt-slow", slow_model, 1, analysis, [30, 100])], local.address,
                               interval=0.2, timeout=240, metrics=metrics)
    assert first.state.phase is Phase.READY, first.state
    url = str((first.live or {})["uri"]) + "/v1/models/half_plus_two:predict"
    stable = str((first.live or {})["latestReadyRevision"]).rsplit("/", 1)[-1]
    started = time.monotonic()
    with Load(url) as load:
        (result,) = await apply_all([_spec("hpt-slow", slow_model, 2, analysis, [30, 100])], local.address,
                                    interval=0.2, timeout=240, metrics=metrics)
    print(f"\nrolled back {time.monotonic() - started:.1f} s after the rollout began")
    timeline = _timeline(local, "hpt-slow")
    _print_timeline("rollout of a slow version 2 (rolled back)", timeline)
    assert result.state.phase is Phase.FAILED and result.state.reason == "RolloutRolledBack", result.state
    assert "p99 latency" in result.state.message
    phase, weight, figures = timeline[-1]
    assert (phase, weight) == ("RolledBack", 0) and figures["p99Ms"] > 50
    assert [(phase, w) for phase, w, _ in timeline] == [("Progressing", 0), ("Progressing", 30), ("RolledBack", 0)]
    live = result.live or {}
    assert [(str(t.get("revision", "")).rsplit("/", 1)[-1], t.get("percent")) for t in live["trafficStatuses"]
            if t.get("percent")] == [(stable, 100)]
    assert load.seen[(stable, 200)] > 0 and {code for _, code in load.seen} == {200}
