"""The TFModelService status a live Cloud Run service calls for (pure).

Every field here is declared in the CRD, so nothing is pruned; the result depends only on
its inputs, so an unchanged world yields an identical status and no write.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfms.api.conditions import (
    FALSE,
    READY,
    SERVICE_READY,
    TRAFFIC_READY,
    TRUE,
    UNKNOWN,
    VALIDATED,
    Condition,
    merge,
)
from tfms.plan.convergence import Convergence, Phase
from tfms.plan.rollout import Phase as RolloutPhase
from tfms.plan.rollout import RolloutState
from tfms.plan.traffic import LATEST


def _short(name: Any) -> str:
    return str(name or "").rsplit("/", 1)[-1]


def traffic_status(live: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per target: revision (LATEST resolved to the latest ready one), percent, tag and its own URL.

    B-042: each tag's URL comes from that tag's own status entry, never another's.
    """
    out = []
    for t in live.get("trafficStatuses", []) or []:
        latest = t.get("type") == LATEST
        entry: dict[str, Any] = {
            "revision": _short(live.get("latestReadyRevision")) if latest else _short(t.get("revision")),
            "percent": int(t.get("percent", 0) or 0),
        }
        if latest:
            entry["latestRevision"] = True
        if t.get("tag"):
            entry["tag"] = t["tag"]
            if t.get("uri"):
                entry["url"] = t["uri"]
        out.append(entry)
    return out


@dataclass(frozen=True)
class Observation:
    """What one reconcile pass learned; becomes status."""

    generation: int
    desired_revision: str = ""
    live: Mapping[str, Any] | None = None
    convergence: Convergence | None = None
    invalid: Sequence[str] = field(default_factory=tuple)  # validation errors
    error_reason: str = ""  # a backend error stopped the pass
    error_message: str = ""
    paused: bool = False
    rollout: RolloutState | None = None  # canary strategy only


def _conditions(o: Observation) -> list[Condition]:
    if o.invalid:
        msg = "; ".join(o.invalid)
        return [Condition(READY, FALSE, "InvalidSpec", msg), Condition(VALIDATED, FALSE, "InvalidSpec", msg)]
    conds = [Condition(VALIDATED, TRUE, "Valid")]
    if o.paused:
        return [Condition(READY, UNKNOWN, "Paused", "spec.paused is true; Cloud Run is left as it is"), *conds]
    if o.error_reason:
        return [Condition(READY, FALSE, o.error_reason, o.error_message), *conds]
    state = o.convergence
    if state is None or o.live is None:
        return [Condition(READY, UNKNOWN, "Creating", "waiting for the Cloud Run service"), *conds]
    live = o.live
    created, ready = _short(live.get("latestCreatedRevision")), _short(live.get("latestReadyRevision"))
    if state.phase is Phase.FAILED:
        service = Condition(SERVICE_READY, FALSE, state.reason, state.message)
    elif created and created == ready and created == (o.desired_revision or created):
        service = Condition(SERVICE_READY, TRUE, "RevisionReady", f"revision {ready} is ready")
    else:
        service = Condition(SERVICE_READY, UNKNOWN, "RevisionPending", state.message or "waiting for the revision")
    if state.phase is Phase.READY:
        traffic = Condition(TRAFFIC_READY, TRUE, "TrafficMigrated", "traffic matches the requested split")
    elif state.phase is Phase.FAILED:
        traffic = Condition(TRAFFIC_READY, FALSE, state.reason, "traffic stays on the last serving revision")
    else:
        traffic = Condition(TRAFFIC_READY, UNKNOWN, state.reason, state.message)
    ready_status = {Phase.READY: TRUE, Phase.FAILED: FALSE, Phase.PENDING: UNKNOWN}[state.phase]
    ready_cond = Condition(READY, ready_status, state.reason, state.message)
    if o.rollout is not None and state.phase is not Phase.FAILED:
        ready_cond = _rollout_ready(o.rollout, ready_cond)
    return [ready_cond, *conds, service, traffic]


_ROLLOUT_READY = {
    RolloutPhase.PROGRESSING: (UNKNOWN, "RolloutProgressing"),
    RolloutPhase.PAUSED: (UNKNOWN, "RolloutPaused"),
    RolloutPhase.FAILED: (FALSE, "RolloutFailed"),
    RolloutPhase.ROLLED_BACK: (FALSE, "RolloutFailed"),
    RolloutPhase.ABORTED: (FALSE, "RolloutAborted"),
}


def _rollout_ready(rollout: RolloutState, converged: Condition) -> Condition:
    """While a canary runs the spec is not yet what serves; a rolled-back spec is not Ready."""
    if rollout.phase is RolloutPhase.SUCCEEDED:
        return converged
    status, reason = _ROLLOUT_READY[rollout.phase]
    if status == UNKNOWN and converged.status != TRUE:
        return converged  # Cloud Run itself is still moving
    return Condition(READY, status, reason, rollout.message)


def _rollout_status(rollout: RolloutState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "phase": rollout.phase.value, "revision": rollout.revision, "step": rollout.step, "weight": rollout.weight,
        "failures": rollout.failures, "message": rollout.message,
    }
    if rollout.stable:
        out["stableRevision"] = rollout.stable
    if rollout.step_started:
        out["stepStarted"] = datetime.datetime.fromtimestamp(rollout.step_started, datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    if rollout.analysis:
        out["analysis"] = dict(rollout.analysis)
    return out


def build_status(o: Observation, previous: Mapping[str, Any] | None, *, now: str) -> dict[str, Any]:
    previous = previous or {}
    status: dict[str, Any] = {
        "observedGeneration": o.generation,
        "conditions": merge(previous.get("conditions"), _conditions(o), now=now, generation=o.generation),
    }
    if o.desired_revision:
        status["desiredRevision"] = o.desired_revision
    live = o.live
    if live:
        status["service"] = str(live.get("name", ""))
        if live.get("uri"):
            status["url"] = live["uri"]
        for key in ("latestCreatedRevision", "latestReadyRevision"):
            if live.get(key):
                status[key] = _short(live[key])
        status["traffic"] = traffic_status(live)
    elif not o.invalid:
        # Keep what we knew when the pass could not read Cloud Run (e.g. a transient error).
        for key in ("service", "url", "latestCreatedRevision", "latestReadyRevision", "traffic"):
            if key in previous:
                status[key] = previous[key]
    if o.rollout is not None:
        status["rollout"] = _rollout_status(o.rollout)
        active = o.rollout.phase.active
        status["stableRevision"] = o.rollout.stable if active or o.rollout.phase is not RolloutPhase.SUCCEEDED \
            else o.rollout.revision
        if active:
            status["canaryRevision"] = o.rollout.revision
            status["canaryPercent"] = o.rollout.weight
    return status


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch turning `current` into `desired` (empty: write nothing)."""
    current = current or {}
    patch: dict[str, Any] = {k: v for k, v in desired.items() if current.get(k) != v}
    for key in current:
        if key not in desired and key in _OWNED:
            patch[key] = None
    return patch


_OWNED = frozenset({"access", "observedGeneration", "conditions", "desiredRevision", "service", "url",
                   "latestCreatedRevision", "latestReadyRevision", "traffic", "rollout", "stableRevision",
                   "canaryRevision", "canaryPercent", "model"})
