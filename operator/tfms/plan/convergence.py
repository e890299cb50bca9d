"""Cloud Run's own definition of done, read from a live service.

The `reconciling` contract: after reconciliation, success means traffic == traffic_statuses,
observed_generation == generation and latest_ready == latest_created; on failure the
terminal condition says why and the last serving state is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tfms.api.conditions import camel
from tfms.plan.traffic import LATEST, normalize


class Phase(StrEnum):
    PENDING = "Pending"  # Cloud Run is still working
    READY = "Ready"
    FAILED = "Failed"


@dataclass(frozen=True)
class Convergence:
    phase: Phase
    reason: str
    message: str = ""

    @property
    def done(self) -> bool:
        return self.phase is not Phase.PENDING


def _short(name: Any) -> str:
    return str(name or "").rsplit("/", 1)[-1]


def _reason_name(condition: Mapping[str, Any]) -> str:
    for key in ("reason", "revisionReason", "executionReason"):
        if condition.get(key):
            return str(condition[key])
    return ""


def convergence(live: Mapping[str, Any], desired_revision: str = "") -> Convergence:
    """Where `live` stands against Cloud Run's equalities (and, if given, our revision)."""
    if live.get("reconciling"):
        return Convergence(Phase.PENDING, "Reconciling", "Cloud Run is rolling out the change")
    terminal = live.get("terminalCondition") or {}
    if terminal.get("state") == "CONDITION_FAILED":
        return Convergence(Phase.FAILED, camel(_reason_name(terminal)) or "Failed",
                           str(terminal.get("message", "")))
    generation = int(live.get("generation", 0) or 0)
    observed = int(live.get("observedGeneration", 0) or 0)
    if observed != generation:
        return Convergence(Phase.PENDING, "OutOfDate", f"observed generation {observed} of {generation}")
    created, ready = _short(live.get("latestCreatedRevision")), _short(live.get("latestReadyRevision"))
    if desired_revision and created != desired_revision:
        return Convergence(Phase.PENDING, "RevisionPending",
                           f"latest created revision is {created or 'none'}, want {desired_revision}")
    if created != ready:
        return Convergence(Phase.PENDING, "RevisionNotReady", f"revision {created} is not ready yet")
    requested = live.get("traffic") or [{"type": LATEST, "percent": 100}]  # empty means 100% latest
    if normalize(requested) != normalize(live.get("trafficStatuses", []) or []):
        return Convergence(Phase.PENDING, "TrafficNotMigrated", "traffic has not reached the requested split")
    if terminal and terminal.get("state") not in (None, "CONDITION_SUCCEEDED"):
        return Convergence(Phase.PENDING, camel(str(terminal.get("state", ""))), str(terminal.get("message", "")))
    return Convergence(Phase.READY, "Ready", "")
