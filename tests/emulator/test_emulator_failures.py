"""Failing revisions: operation errors, the terminal condition, and traffic left on the last serving state."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from tests.emulator.emulator_testkit import (
    FAILED,
    IMAGE2,
    LATEST,
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


def test_failed_revision_keeps_last_serving_state(api: Api, emulator: Emulator) -> None:
    good = api.create_ready("svc")
    emulator.control.fail_next_revision("CONTAINER_MISSING", "Image 'tensorflow/serving:2.20.0' not found.")
    good.template.containers[0].image = IMAGE2
    with pytest.raises(exceptions.FailedPrecondition) as err:
        api.update_ready(good)
    bad = api.get("svc")
    failed_revision = short(bad.latest_created_revision)
    message = (
        f"Revision '{failed_revision}' is not ready and cannot serve traffic. "
        "Image 'tensorflow/serving:2.20.0' not found."
    )
    assert err.value.message == message

    assert bad.reconciling is False
    assert bad.generation == 2 and bad.observed_generation == 1
    assert bad.latest_ready_revision == good.latest_ready_revision != bad.latest_created_revision
    assert list(bad.traffic_statuses) == list(good.traffic_statuses) and bad.uri == good.uri
    assert bad.terminal_condition.state == FAILED
    assert bad.terminal_condition.reason == REASON.CONTAINER_MISSING
    assert bad.terminal_condition.message == message
    assert bad.terminal_condition.severity == run_v2.Condition.Severity.ERROR
    conditions = {c.type_: c for c in bad.conditions}
    assert conditions["ConfigurationsReady"].state == FAILED

    rev = api.revisions.get_revision(name=bad.latest_created_revision)
    ready = {c.type_: c for c in rev.conditions}["Ready"]
    assert ready.state == FAILED and ready.reason == REASON.CONTAINER_MISSING
    assert ready.message == "Image 'tensorflow/serving:2.20.0' not found."
    assert emulator.wait_executor_idle()
    assert emulator.executor.routes[good.name][0] == [(good.latest_ready_revision, 100)]  # type: ignore[attr-defined]

    # A fixed deploy converges again.
    bad.template.containers[0].image = "tensorflow/serving:2.21.0"
    fixed = api.update_ready(bad)
    assert fixed.terminal_condition.state == SUCCEEDED
    assert fixed.latest_ready_revision == fixed.latest_created_revision and fixed.observed_generation == 3


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


def test_traffic_to_a_failing_revision_is_not_moved(api: Api, emulator: Emulator) -> None:
    good = api.create_ready("svc", template(revision="svc-v1"))
    emulator.control.fail_next_revision("HEALTH_CHECK_CONTAINER_ERROR", "The container failed to listen on PORT=8080.")
    good.template = template(IMAGE2, revision="svc-v2")
    good.traffic = [to_revision("svc-v1", 50), to_revision("svc-v2", 50, tag="canary")]
    with pytest.raises(exceptions.FailedPrecondition) as err:
        api.update_ready(good)
    assert "Revision 'svc-v2' is not ready" in err.value.message
    bad = api.get("svc")
    assert len(bad.traffic) == 2  # stored as asked
    assert [(t.type_, t.percent) for t in bad.traffic_statuses] == [(LATEST, 100)]
    assert bad.terminal_condition.reason == REASON.REVISION_FAILED  # a revision reason maps to REVISION_FAILED
    rev = api.revisions.get_revision(name=bad.latest_created_revision)
    ready = {c.type_: c for c in rev.conditions}["Ready"]
    assert ready.revision_reason == REVISION_REASON.HEALTH_CHECK_CONTAINER_ERROR


def test_failed_first_revision(api: Api, emulator: Emulator) -> None:
    emulator.control.fail_next_revision("CONTAINER_PERMISSION_DENIED", "No access to the image.")
    with pytest.raises(exceptions.FailedPrecondition):
        api.create_ready("svc")
    svc = api.get("svc")
    assert svc.observed_generation == 0 and svc.latest_ready_revision == "" and svc.uri == ""
    assert svc.terminal_condition.reason == REASON.CONTAINER_PERMISSION_DENIED


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
