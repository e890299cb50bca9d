"""Cloud Run's reconciliation contract, read from live services."""

from __future__ import annotations

from typing import Any

import pytest

from tfms.plan.convergence import Phase, convergence

LATEST = {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}


def _live(**over: Any) -> dict[str, Any]:
    live: dict[str, Any] = {
        "generation": "2", "observedGeneration": "2", "reconciling": False,
        "latestCreatedRevision": "projects/p/locations/l/services/s/revisions/s-b",
        "latestReadyRevision": "projects/p/locations/l/services/s/revisions/s-b",
        "traffic": [LATEST], "trafficStatuses": [LATEST],
        "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
    }
    live.update(over)
    return live


CASES = [
    ("ready", {}, Phase.READY, "Ready"),
    ("reconciling", {"reconciling": True}, Phase.PENDING, "Reconciling"),
    ("old generation", {"observedGeneration": "1"}, Phase.PENDING, "OutOfDate"),
    ("revision not ready", {"latestReadyRevision": "s-a"}, Phase.PENDING, "RevisionNotReady"),
    ("traffic not migrated", {"trafficStatuses": [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "s-a", "percent": 100}]},
     Phase.PENDING, "TrafficNotMigrated"),
    ("failed", {"terminalCondition": {"type": "Ready", "state": "CONDITION_FAILED", "reason": "REVISION_FAILED",
                                      "message": "container failed"}}, Phase.FAILED, "RevisionFailed"),
]


@pytest.mark.parametrize(("over", "phase", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_convergence(over: dict[str, Any], phase: Phase, reason: str) -> None:
    state = convergence(_live(**over), "s-b")
    assert (state.phase, state.reason) == (phase, reason)


def test_waits_for_our_revision() -> None:
    state = convergence(_live(), "s-c")
    assert (state.phase, state.reason) == (Phase.PENDING, "RevisionPending")
