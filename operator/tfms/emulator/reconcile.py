"""Status transitions of services and revisions, following the v2 reconciliation contract.

While `reconciling`, `observed_generation`, `latest_ready_revision`, `traffic_statuses` and
`uri` keep their previous values. Success: `traffic_statuses` mirrors `traffic`,
`observed_generation == generation`, `latest_ready == latest_created`. Failure: those
fields keep the last serving state and the terminal condition says why. These functions
only decide and mutate records; the control plane owns locking, operations and effects.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from google.cloud import run_v2

from .conditions import (
    ACTIVE,
    CONFIGURATIONS_READY,
    CONTAINER_HEALTHY,
    READY,
    RESOURCES_AVAILABLE,
    ROUTES_READY,
    Severity,
    State,
    condition,
    service_reason,
    set_condition,
)
from .naming import deterministic_url
from .state import Phase, RevisionRecord, ServiceRecord
from .validation import LATEST


def new_etag() -> str:
    return f'"{uuid.uuid4().hex[:16]}"'


def effective_traffic(service: run_v2.Service) -> list[run_v2.TrafficTarget]:
    """The stored traffic, or its documented meaning when empty: 100% to the latest ready."""
    if service.traffic:
        return list(service.traffic)
    return [run_v2.TrafficTarget(type_=LATEST, percent=100)]


@dataclass(frozen=True)
class Wait:
    """A revision the reconciliation depends on has not settled yet."""


@dataclass(frozen=True)
class Fail:
    revision: RevisionRecord | None
    message: str
    reason: str


@dataclass(frozen=True)
class Succeed:
    latest_ready: str


Outcome = Wait | Fail | Succeed


def failure_message(rrec: RevisionRecord) -> str:
    return f"Revision '{rrec.id}' is not ready and cannot serve traffic. {rrec.message}".strip()


def next_step(record: ServiceRecord) -> Outcome:
    """What an in-progress reconciliation can conclude from the revisions' current phases."""
    svc = record.service
    latest = record.revisions.get(str(svc.latest_created_revision).rsplit("/", 1)[-1])
    if latest is None:
        return Fail(None, "The latest created revision no longer exists.", "REVISION_FAILED")
    if latest.phase is Phase.PENDING:
        return Wait()
    if latest.phase is Phase.FAILED and record.awaiting == latest.revision.name:
        return Fail(latest, failure_message(latest), latest.reason)
    ready = str(latest.revision.name) if latest.phase is Phase.READY else str(svc.latest_ready_revision)
    for target in effective_traffic(svc):
        if target.type_ == LATEST:
            if not ready:
                return Fail(latest, failure_message(latest), latest.reason)
            continue
        rrec = record.revisions.get(target.revision)
        if rrec is None:
            return Fail(None, f"Revision '{target.revision}' does not exist.", "REVISION_FAILED")
        if rrec.phase is Phase.PENDING:
            return Wait()
        if rrec.phase is Phase.FAILED:
            return Fail(rrec, failure_message(rrec), rrec.reason)
    return Succeed(ready)


def mark_reconciling(record: ServiceRecord, template_changed: bool, now: datetime) -> None:
    svc = record.service
    svc.reconciling = True
    svc.terminal_condition = condition(READY, State.CONDITION_RECONCILING, now, "Deploying.")
    conds = list(svc.conditions)
    conds = set_condition(conds, condition(ROUTES_READY, State.CONDITION_RECONCILING, now, "Routing traffic."))
    if template_changed:
        conds = set_condition(
            conds, condition(CONFIGURATIONS_READY, State.CONDITION_RECONCILING, now, "Creating Revision.")
        )
    svc.conditions = conds
    svc.etag = new_etag()


def resolve_routes(record: ServiceRecord) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """(revision full name, percent) summing to 100, and tag -> revision full name."""
    svc = record.service
    split: dict[str, int] = {}
    tags: dict[str, str] = {}
    for target in svc.traffic_statuses:
        rev = str(svc.latest_ready_revision) if target.type_ == LATEST else record.name.revision(target.revision)
        if target.percent:
            split[rev] = split.get(rev, 0) + target.percent
        if target.tag:
            tags[target.tag] = rev
    return list(split.items()), tags


def routed_revisions(record: ServiceRecord, latest_ready: str) -> set[str]:
    """Full names of the revisions the spec's traffic would make active: a percent or a tag."""
    out = set()
    for target in effective_traffic(record.service):
        if target.percent or target.tag:
            rev = latest_ready if target.type_ == LATEST else record.name.revision(target.revision)
            if rev:
                out.add(rev)
    return out


def active_revisions(record: ServiceRecord) -> set[str]:
    """Full names of the revisions the service serves now (from its traffic statuses)."""
    split, tags = resolve_routes(record)
    return {rev for rev, _ in split} | set(tags.values())


RETIRED_MESSAGE = "Revision retired."
RESERVE_MESSAGE = "Revision is in reserve: it is the latest ready revision but traffic is pinned elsewhere."


def mark_activity(record: ServiceRecord, now: datetime) -> None:
    """Cloud Run's `Active` condition on each ready revision: succeeded while it serves traffic
    (a percent or a tag); otherwise failed with severity INFO, reason RETIRED, or RESERVE for the
    latest ready revision (which, like a serving one, cannot be deleted)."""
    active = active_revisions(record)
    latest_ready = str(record.service.latest_ready_revision)
    for rrec in record.revisions.values():
        if rrec.phase is not Phase.READY:
            continue
        name = str(rrec.revision.name)
        if name in active:
            new = condition(ACTIVE, State.CONDITION_SUCCEEDED, now)
        else:
            reason, message = ("RESERVE", RESERVE_MESSAGE) if name == latest_ready else ("RETIRED", RETIRED_MESSAGE)
            new = condition(ACTIVE, State.CONDITION_FAILED, now, message, reason)
            run_v2.Condition.pb(new).severity = Severity.INFO
        _set_revision_condition(rrec, new, now)


def zero_percent_tags(record: ServiceRecord) -> set[str]:
    """Tags whose target carries no traffic (the ones Cloud Run's tag quota may delete)."""
    return {t.tag for t in record.service.traffic_statuses if t.tag and not t.percent}


def drop_tag(record: ServiceRecord, tag: str, now: datetime) -> None:
    """Delete a 0% tag from both `traffic` and `traffic_statuses` (so they stay equal); a 0%
    target left with no tag carries nothing and goes too."""
    svc = record.service
    svc.traffic = [t for t in svc.traffic if t.tag != tag]
    svc.traffic_statuses = [t for t in svc.traffic_statuses if t.tag != tag]
    record.tag_seq.pop(tag, None)
    record.urls.pop(tag, None)
    svc.update_time = now
    svc.etag = new_etag()
    mark_activity(record, now)


def check_active_limit(record: ServiceRecord, step: Succeed, others: int, limit: int, now: datetime) -> Succeed | Fail:
    """A reconciliation that would make a revision active beyond the project+region cap (with
    `others` active elsewhere) fails with ACTIVE_REVISION_LIMIT_REACHED on that revision; one that
    adds no active revision always passes."""
    wanted = routed_revisions(record, step.latest_ready)
    added = wanted - active_revisions(record)
    if not added or others + len(wanted) <= limit:
        return step
    victim = max((record.revisions[n.rsplit("/", 1)[-1]] for n in added), key=lambda r: r.seq)
    message = (
        f"Revision '{victim.id}' cannot serve traffic: the maximum allowed number of active revisions "
        f"({limit} per project and region) has been reached."
    )
    limited = condition(ACTIVE, State.CONDITION_FAILED, now, message, "ACTIVE_REVISION_LIMIT_REACHED")
    _set_revision_condition(victim, limited, now)
    return Fail(victim, message, "ACTIVE_REVISION_LIMIT_REACHED")


def _set_revision_condition(rrec: RevisionRecord, new: run_v2.Condition, now: datetime) -> None:
    rev = rrec.revision
    old = next((c for c in rev.conditions if c.type_ == new.type_), None)
    key = (new.state, new.message, new.revision_reason)
    if old is not None and (old.state, old.message, old.revision_reason) == key:
        return
    rev.conditions = set_condition(list(rev.conditions), new)
    rev.update_time = now
    rev.etag = new_etag()


def apply_success(record: ServiceRecord, latest_ready: str, now: datetime) -> None:
    svc = record.service
    svc.latest_ready_revision = latest_ready
    svc.observed_generation = svc.generation
    statuses = []
    for target in effective_traffic(svc):
        status = run_v2.TrafficTargetStatus(
            type_=target.type_, revision=target.revision, percent=target.percent, tag=target.tag
        )
        if target.tag:
            status.uri = record.urls.get(target.tag, "")
        statuses.append(status)
    svc.traffic_statuses = statuses
    svc.uri = record.urls.get("", "")
    name = record.name
    svc.urls = [u for u in (svc.uri, deterministic_url(name.project, name.location, name.service_id)) if u]
    conds = set_condition(list(svc.conditions), condition(ROUTES_READY, State.CONDITION_SUCCEEDED, now))
    latest = record.revisions.get(str(svc.latest_created_revision).rsplit("/", 1)[-1])
    if latest is not None and latest.phase is Phase.FAILED:
        # Traffic converged, but the newest configuration never became ready.
        message = failure_message(latest)
        reason = service_reason(latest.reason)
        conds = set_condition(conds, condition(CONFIGURATIONS_READY, State.CONDITION_FAILED, now, message, reason))
        svc.terminal_condition = condition(READY, State.CONDITION_FAILED, now, message, reason)
    else:
        conds = set_condition(conds, condition(CONFIGURATIONS_READY, State.CONDITION_SUCCEEDED, now))
        svc.terminal_condition = condition(READY, State.CONDITION_SUCCEEDED, now)
    svc.conditions = conds
    svc.reconciling = False
    svc.etag = new_etag()
    record.awaiting = ""
    mark_activity(record, now)


def apply_failure(record: ServiceRecord, fail: Fail, now: datetime) -> None:
    svc = record.service
    reason = service_reason(fail.reason)
    conds = list(svc.conditions)
    if fail.revision is not None and fail.revision.revision.name == svc.latest_created_revision:
        conds = set_condition(conds, condition(CONFIGURATIONS_READY, State.CONDITION_FAILED, now, fail.message, reason))
    conds = set_condition(conds, condition(ROUTES_READY, State.CONDITION_FAILED, now, fail.message, reason))
    svc.conditions = conds
    svc.terminal_condition = condition(READY, State.CONDITION_FAILED, now, fail.message, reason)
    svc.reconciling = False
    svc.etag = new_etag()
    record.awaiting = ""


def revision_settled(rrec: RevisionRecord, phase: Phase, now: datetime, reason: str = "", message: str = "") -> None:
    """Record an executor's verdict on a revision in its own conditions."""
    rrec.phase = phase
    rrec.reason = reason
    rrec.message = message
    rev = rrec.revision
    conds = list(rev.conditions)
    if phase is Phase.READY:
        for type_ in (RESOURCES_AVAILABLE, CONTAINER_HEALTHY, READY):
            conds = set_condition(conds, condition(type_, State.CONDITION_SUCCEEDED, now))
    else:
        failed = condition(CONTAINER_HEALTHY, State.CONDITION_FAILED, now, message, reason)
        conds = set_condition(conds, failed)
        conds = set_condition(conds, condition(READY, State.CONDITION_FAILED, now, message, reason))
    rev.conditions = conds
    rev.reconciling = False
    rev.observed_generation = rev.generation
    rev.update_time = now
    rev.etag = new_etag()


def serving_revisions(record: ServiceRecord) -> set[str]:
    """Revision ids that must not be deleted: routed (spec or status), tagged, or latest."""
    svc = record.service
    keep = {
        str(n).rsplit("/", 1)[-1]
        for n in (svc.latest_created_revision, svc.latest_ready_revision, record.awaiting)
        if n
    }
    targets: list[run_v2.TrafficTarget | run_v2.TrafficTargetStatus] = [*svc.traffic, *svc.traffic_statuses]
    for target in targets:
        if target.type_ != LATEST and target.revision:
            keep.add(target.revision)
    return keep
