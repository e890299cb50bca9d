"""Builders for v2 `Condition` messages, and the mapping of executor reasons onto them.

Executors report a reason as a Cloud Run enum name, which lives either in `CommonReason`
(e.g. CONTAINER_MISSING) or `RevisionReason` (e.g. HEALTH_CHECK_CONTAINER_ERROR); the
condition's reason oneof must use the right one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import run_v2

State = run_v2.Condition.State
Severity = run_v2.Condition.Severity
CommonReason = run_v2.Condition.CommonReason
RevisionReason = run_v2.Condition.RevisionReason

READY = "Ready"
ROUTES_READY = "RoutesReady"
CONFIGURATIONS_READY = "ConfigurationsReady"
CONTAINER_HEALTHY = "ContainerHealthy"
RESOURCES_AVAILABLE = "ResourcesAvailable"
ACTIVE = "Active"


def is_common_reason(reason: str) -> bool:
    return reason in CommonReason.__members__ and reason != "COMMON_REASON_UNDEFINED"


def known_reason(reason: str) -> bool:
    """A CommonReason or RevisionReason name (what executors and fault injection may report)."""
    return is_common_reason(reason) or (
        reason in RevisionReason.__members__ and reason != "REVISION_REASON_UNDEFINED"
    )


def service_reason(executor_reason: str) -> str:
    """The reason a service's failed terminal condition carries: a CommonReason name."""
    return executor_reason if is_common_reason(executor_reason) else "REVISION_FAILED"


def condition(
    type_: str,
    state: int,  # a Condition.State member (proto-plus enums are ints to mypy)
    now: datetime,
    message: str = "",
    reason: str = "",
) -> run_v2.Condition:
    """A condition; `reason` is put in whichever reason enum knows the name."""
    fields: dict[str, Any] = {"type_": type_, "state": state, "message": message, "last_transition_time": now}
    if state == State.CONDITION_FAILED:
        fields["severity"] = Severity.ERROR
    if reason and is_common_reason(reason):
        fields["reason"] = CommonReason.__members__[reason]
    elif reason in RevisionReason.__members__ and reason != "REVISION_REASON_UNDEFINED":
        fields["revision_reason"] = RevisionReason.__members__[reason]
    elif reason:
        fields["reason"] = CommonReason.UNKNOWN
    return run_v2.Condition(**fields)


def set_condition(conditions: list[run_v2.Condition], new: run_v2.Condition) -> list[run_v2.Condition]:
    """Replace the condition of the same type, keeping its transition time if the state is unchanged."""
    out: list[run_v2.Condition] = []
    replaced = False
    for old in conditions:
        if old.type_ == new.type_:
            if old.state == new.state:
                run_v2.Condition.pb(new).last_transition_time.CopyFrom(run_v2.Condition.pb(old).last_transition_time)
            out.append(new)
            replaced = True
        else:
            out.append(old)
    if not replaced:
        out.append(new)
    return out
