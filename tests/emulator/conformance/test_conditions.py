"""cloud-run-v2.md, "Conditions (`Condition`)": what services and revisions report."""

from __future__ import annotations

from google.cloud import run_v2

from tests.emulator.emulator_testkit import FAILED, IMAGE2, SUCCEEDED, Api, short, to_revision

REVISION_REASON = run_v2.Condition.RevisionReason
INFO = run_v2.Condition.Severity.INFO


def _by_type(conditions: list[run_v2.Condition]) -> dict[str, run_v2.Condition]:
    return {c.type_: c for c in conditions}


def test_ready_service_and_revision_conditions(cr: Api) -> None:
    """ "`type`, `state` (CONDITION_PENDING|RECONCILING|FAILED|SUCCEEDED), `message`,
    `last_transition_time`, `severity`": a converged service is Ready (terminal condition) with
    RoutesReady and ConfigurationsReady; its revision is Ready, ContainerHealthy,
    ResourcesAvailable and Active."""
    svc = cr.create_ready("svc")
    assert (svc.terminal_condition.type_, svc.terminal_condition.state) == ("Ready", SUCCEEDED)
    assert svc.terminal_condition.last_transition_time
    assert {t: c.state for t, c in _by_type(list(svc.conditions)).items()} == {
        "RoutesReady": SUCCEEDED,
        "ConfigurationsReady": SUCCEEDED,
    }
    rev = cr.revisions.get_revision(name=svc.latest_created_revision)
    states = {t: c.state for t, c in _by_type(list(rev.conditions)).items()}
    assert states == {
        "Ready": SUCCEEDED,
        "ContainerHealthy": SUCCEEDED,
        "ResourcesAvailable": SUCCEEDED,
        "Active": SUCCEEDED,
    }
    assert not rev.reconciling and rev.observed_generation == rev.generation == 1


def test_revision_without_traffic_is_retired(cr: Api) -> None:
    """ "`RevisionReason`: PENDING, RESERVE, RETIRED, ...": a ready revision that a deploy leaves
    with no traffic (no percent, no tag) reports `Active` failed with RETIRED, severity INFO, and
    becomes Active again when traffic returns to it (a rollback)."""
    svc = cr.create_ready("svc")
    first = svc.latest_created_revision
    svc.template.containers[0].image = IMAGE2
    svc = cr.update_ready(svc)
    old = _by_type(list(cr.revisions.get_revision(name=first).conditions))
    assert old["Ready"].state == SUCCEEDED
    active = old["Active"]
    assert (active.state, active.revision_reason, active.severity) == (FAILED, REVISION_REASON.RETIRED, INFO)
    assert active.message == "Revision retired."
    new = _by_type(list(cr.revisions.get_revision(name=svc.latest_created_revision).conditions))
    assert new["Active"].state == SUCCEEDED

    svc.traffic = [to_revision(short(first), 100)]  # roll back
    cr.update_ready(svc)
    assert _by_type(list(cr.revisions.get_revision(name=first).conditions))["Active"].state == SUCCEEDED
    newer = _by_type(list(cr.revisions.get_revision(name=svc.latest_created_revision).conditions))["Active"]
    assert newer.revision_reason == REVISION_REASON.RESERVE  # still the latest ready: not retired


def test_tagged_revision_at_zero_percent_stays_active(cr: Api) -> None:
    """A tag makes a 0% revision reachable (its tag URL), so it is not retired."""
    svc = cr.create_ready("svc")
    first = short(svc.latest_created_revision)
    svc.template.containers[0].image = IMAGE2
    svc = cr.update_ready(svc)
    svc.traffic = [to_revision(short(svc.latest_created_revision), 100), to_revision(first, 0, tag="old")]
    cr.update_ready(svc)
    conditions = _by_type(list(cr.revisions.get_revision(name=f"{svc.name}/revisions/{first}").conditions))
    assert conditions["Active"].state == SUCCEEDED


def test_latest_revision_with_pinned_traffic_is_in_reserve(cr: Api) -> None:
    """"`RevisionReason`: PENDING, RESERVE, ..." [inferred use]: with traffic pinned elsewhere the
    latest ready revision serves nothing yet is not retired (it cannot be deleted either)."""
    svc = cr.create_ready("svc")
    first = short(svc.latest_created_revision)
    svc.traffic = [to_revision(first, 100)]
    svc = cr.update_ready(svc)
    svc.template.containers[0].image = IMAGE2
    svc = cr.update_ready(svc)
    active = _by_type(list(cr.revisions.get_revision(name=svc.latest_ready_revision).conditions))["Active"]
    assert (active.state, active.revision_reason, active.severity) == (FAILED, REVISION_REASON.RESERVE, INFO)
    with cr.raises("FAILED_PRECONDITION"):
        cr.revisions.delete_revision(name=svc.latest_ready_revision)
