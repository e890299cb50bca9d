"""Failing revisions: operation errors, the terminal condition, and traffic left on the last serving state."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from tests.emulator.emulator_testkit import (
    FAILED,
    IMAGE2,
    SUCCEEDED,
    Api,
    ManualExecutor,
    finish,
    short,
    template,
    to_revision,
)
from tfms.emulator import Emulator, SimulatedExecutor

REASON = run_v2.Condition.CommonReason
REVISION_REASON = run_v2.Condition.RevisionReason


def test_failed_revision_is_never_routed(api: Api, emulator: Emulator) -> None:
    """The executor keeps routing to the last serving revision (the API side is in
    conformance/test_failures.py)."""
    good = api.create_ready("svc")
    emulator.control.fail_next_revision("CONTAINER_MISSING", "Image not found.")
    good.template.containers[0].image = IMAGE2
    with pytest.raises(exceptions.FailedPrecondition):
        api.update_ready(good)
    assert emulator.wait_executor_idle()
    assert emulator.executor.routes[good.name][0] == [(good.latest_ready_revision, 100)]  # type: ignore[attr-defined]
    assert len(emulator.executor.launched) == 1  # type: ignore[attr-defined]  # failed before launch


def test_traffic_only_update_after_failure_moves_traffic_but_stays_not_ready(api: Api, emulator: Emulator) -> None:
    good = api.create_ready("svc")
    emulator.control.fail_next_revision("CONTAINER_MISSING", "gone")
    good.template.containers[0].image = IMAGE2
    with pytest.raises(exceptions.FailedPrecondition):
        api.update_ready(good)
    bad = api.get("svc")
    bad.traffic = [to_revision(short(good.latest_ready_revision), 100, tag="stable")]
    routed = api.update_ready(bad)
    assert [(t.revision, t.percent, t.tag) for t in routed.traffic_statuses] == [
        (short(good.latest_ready_revision), 100, "stable")
    ]
    assert routed.observed_generation == routed.generation == 3
    # The newest configuration still never became ready, so the service is not converged.
    assert routed.latest_ready_revision != routed.latest_created_revision
    assert routed.terminal_condition.state == FAILED
    assert {c.type_: c.state for c in routed.conditions} == {"RoutesReady": SUCCEEDED, "ConfigurationsReady": FAILED}


def test_image_failure_rule_and_simulated_executor_knob(
    api: Api, emulator: Emulator, executor: SimulatedExecutor
) -> None:
    emulator.control.fail_revisions_with_image("bad/image:1")
    with pytest.raises(exceptions.FailedPrecondition) as err:
        api.create_ready("one", template("bad/image:1"))
    assert "Image 'bad/image:1' not found." in err.value.message
    with pytest.raises(exceptions.FailedPrecondition):
        api.create_ready("two", template("bad/image:1"))
    emulator.control.clear_image_failure("bad/image:1")
    api.create_ready("three", template("bad/image:1"))

    executor.fail_next("CONTAINER_MISSING", "from the executor")
    with pytest.raises(exceptions.FailedPrecondition) as err:
        api.create_ready("four")
    assert err.value.message.endswith("from the executor")


def test_executor_failure_from_another_thread(manual_api: Api, manual: ManualExecutor) -> None:
    op = manual_api.create("svc")
    launch = manual.wait_launched(1)
    manual.fail(launch.revision, "CONTAINER_MISSING", "missing")
    with pytest.raises(exceptions.FailedPrecondition):
        finish(op)
    # Late or duplicate reports are ignored.
    manual.ready(launch.revision)
    assert manual_api.get("svc").terminal_condition.state == FAILED


def test_deleting_a_reconciling_service_aborts_its_operation(manual_api: Api, manual: ManualExecutor) -> None:
    op = manual_api.create("svc")
    manual.wait_launched(1)
    finish(manual_api.services.delete_service(name=manual_api.name("svc")))
    with pytest.raises(exceptions.Aborted):
        finish(op)
    assert manual_api.emulator.wait_executor_idle()
    assert manual.stopped == [manual.launched[0].revision]
