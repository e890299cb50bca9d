"""Canary rollouts through `tfms apply` against the emulator (simulated revisions, no metrics)."""

from __future__ import annotations

from typing import Any

import grpc

from tests.conftest import base_object
from tfms.api.validation import parse
from tfms.backends.cloudrun import connected
from tfms.cli.apply import apply_all
from tfms.emulator import Emulator
from tfms.plan.convergence import Phase
from tfms.plan.rollout import Action, state_of
from tfms.plan.rollout import Phase as RolloutPhase

CANARY = {"strategy": "canary", "steps": [10, 50, 100], "interval": "50ms"}


def _spec(version: int, **extra: Any) -> Any:
    return parse(base_object(model={"name": "fraud", "basePath": "gs://b/m", "version": version},
                             rollout=CANARY, **extra))


def _traffic_writes(emulator: Emulator) -> list[list[tuple[str, int, str]]]:
    out = []
    for call in emulator.control.calls:
        if call.method in ("CreateService", "UpdateService") and not call.request.validate_only:
            out.append([(t.revision.rsplit("-", 1)[-1][:4] if t.revision else "LATEST", t.percent, t.tag)
                        for t in call.request.service.traffic])
    return out


async def test_canary_steps_through_weights_and_promotes(emulator: Emulator) -> None:
    (first,) = await apply_all([_spec(1)], emulator.address, interval=0.01, timeout=30)
    assert first.state.phase is Phase.READY
    stable = first.live["latestReadyRevision"].rsplit("/", 1)[-1]  # type: ignore[index]
    (result,) = await apply_all([_spec(2)], emulator.address, interval=0.01, timeout=30)
    assert result.state.phase is Phase.READY, result.state
    live = result.live or {}
    canary = live["latestReadyRevision"].rsplit("/", 1)[-1]
    statuses = {(t.get("revision", "").rsplit("/", 1)[-1], t.get("percent", 0), t.get("tag")) for t in
                live["trafficStatuses"]}
    assert statuses == {(canary, 100, "stable"), (stable, 0, "prev")}
    weights = [[p for (_rev, p, tag) in write if tag == "canary"] for write in _traffic_writes(emulator)[1:]]
    assert [w for w in weights if w] == [[0], [10], [50]]  # dark, then each step; never a jump


async def test_candidate_that_cannot_start_gets_no_traffic(emulator: Emulator) -> None:
    await apply_all([_spec(1)], emulator.address, interval=0.01, timeout=30)
    emulator.control.fail_next_revision("CONTAINER_MISSING", "Image not found.")
    (result,) = await apply_all([_spec(2)], emulator.address, interval=0.01, timeout=30)
    assert result.state.phase is Phase.FAILED
    # The apply that saw it fail also recorded it: `rollout status` must not wait forever.
    async with connected(emulator.address) as api:
        state = state_of(await api.get_service(result.live["name"] if result.live else ""))
    assert state is not None and state.phase is RolloutPhase.FAILED and "Image not found." in state.message
    canary_writes = [p for write in _traffic_writes(emulator) for (_r, p, tag) in write if tag == "canary"]
    assert canary_writes and max(canary_writes) == 0


async def test_abort_and_rollback_on_demand(emulator: Emulator) -> None:
    await apply_all([_spec(1)], emulator.address, interval=0.01, timeout=30)
    gated = parse(base_object(model={"name": "fraud", "basePath": "gs://b/m", "version": 2},
                              rollout={**CANARY, "manualGates": True}))
    (paused,) = await apply_all([gated], emulator.address, interval=0.01, timeout=30)
    assert paused.state.reason == "RolloutPaused" and "approval" in paused.state.message
    (aborted,) = await apply_all([gated], emulator.address, interval=0.01, timeout=30, action=Action.ABORT)
    assert aborted.state.phase is Phase.FAILED and "aborted" in aborted.state.message
    live = aborted.live or {}
    assert [t.get("percent", 0) for t in live["trafficStatuses"]] == [100]


async def test_transient_errors_mid_rollout_resume_from_cloud_run(emulator: Emulator) -> None:
    await apply_all([_spec(1)], emulator.address, interval=0.01, timeout=30)
    emulator.control.fail_next("UpdateService", grpc.StatusCode.UNAVAILABLE, count=2)
    (result,) = await apply_all([_spec(2)], emulator.address, interval=0.01, timeout=30)
    assert result.state.phase is Phase.READY


async def test_no_wait_apply_reports_a_rollout_its_pass_saw_fail(emulator: Emulator) -> None:
    """`apply --no-wait` waits for nothing, but a failure its own pass read is still a failure."""
    await apply_all([_spec(1)], emulator.address, interval=0.01, timeout=30)
    emulator.control.fail_next_revision("CONTAINER_MISSING", "Image not found.")
    (first,) = await apply_all([_spec(2)], emulator.address, wait=False)
    assert first.state.reason == "NotWaited"  # written; Cloud Run has not answered yet
    (failed,) = await apply_all([_spec(2)], emulator.address, interval=0.01, timeout=30)  # waits: sees it fail
    assert failed.state.phase is Phase.FAILED
    (again,) = await apply_all([_spec(2)], emulator.address, wait=False)
    assert (again.state.phase, again.state.reason) == (Phase.FAILED, "RolloutFailed")
    assert "Image not found." in again.state.message
