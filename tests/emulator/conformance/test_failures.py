"""Failing the way Cloud Run fails: the reconciliation contract's failure half, "Conditions", the
long-running operation shape and the error mapping (reference: testing-without-a-cluster.md).

Faults are injected through `emulator.control` (the server's knobs); everything observed goes
through the real client.
"""

from __future__ import annotations

import grpc
import pytest
from google.api_core import exceptions
from google.api_core import retry as retries
from google.cloud import run_v2

from tests.emulator.emulator_testkit import (
    FAILED,
    IMAGE2,
    LATEST,
    SUCCEEDED,
    Api,
    finish,
    short,
    template,
    to_revision,
)

REASON = run_v2.Condition.CommonReason
REVISION_REASON = run_v2.Condition.RevisionReason


def test_failed_revision_keeps_the_last_serving_state(cr: Api) -> None:
    """ "On failure, `traffic_statuses`, `observed_generation` and `latest_ready_revision` keep the
    **last serving** state, and the details are in `terminal_condition` and `conditions`." """
    good = cr.create_ready("svc")
    cr.emulator.control.fail_next_revision("CONTAINER_MISSING", "Image 'tensorflow/serving:2.20.0' not found.")
    good.template.containers[0].image = IMAGE2
    with pytest.raises(exceptions.FailedPrecondition) as err:  # the LRO error: one class on both transports
        cr.update_ready(good)
    bad = cr.get("svc")
    failed = short(bad.latest_created_revision)
    assert err.value.message == (
        f"Revision '{failed}' is not ready and cannot serve traffic. Image 'tensorflow/serving:2.20.0' not found."
    )
    assert not bad.reconciling and bad.generation == 2 and bad.observed_generation == 1
    assert bad.latest_ready_revision == good.latest_ready_revision != bad.latest_created_revision
    assert list(bad.traffic_statuses) == list(good.traffic_statuses) and bad.uri == good.uri
    terminal = bad.terminal_condition
    assert (terminal.type_, terminal.state, terminal.reason) == ("Ready", FAILED, REASON.CONTAINER_MISSING)
    assert terminal.message == err.value.message and terminal.severity == run_v2.Condition.Severity.ERROR
    assert {c.type_: c.state for c in bad.conditions}["ConfigurationsReady"] == FAILED

    bad.template.containers[0].image = "tensorflow/serving:2.21.0"  # a fixed deploy converges again
    fixed = cr.update_ready(bad)
    assert fixed.terminal_condition.state == SUCCEEDED and fixed.observed_generation == fixed.generation == 3


@pytest.mark.parametrize(
    ("reason", "field", "expected"),
    [
        ("CONTAINER_MISSING", "reason", REASON.CONTAINER_MISSING),
        ("CONTAINER_PERMISSION_DENIED", "reason", REASON.CONTAINER_PERMISSION_DENIED),
        ("HEALTH_CHECK_CONTAINER_ERROR", "revision_reason", REVISION_REASON.HEALTH_CHECK_CONTAINER_ERROR),
    ],
)
def test_failed_revision_carries_cloud_run_reason_enums(cr: Api, reason: str, field: str, expected: int) -> None:
    """ "`Condition` ... and a oneof reason: `CommonReason`: REVISION_FAILED, ..., CONTAINER_MISSING,
    CONTAINER_PERMISSION_DENIED ...; `RevisionReason`: ... HEALTH_CHECK_CONTAINER_ERROR ..." — the
    revision's Ready condition uses the enum that owns the name; the service's terminal condition a
    CommonReason (REVISION_FAILED for revision-specific reasons)."""
    cr.emulator.control.fail_next_revision(reason, "It did not start.")
    with pytest.raises(exceptions.FailedPrecondition):
        cr.create_ready("svc")
    svc = cr.get("svc")
    assert svc.observed_generation == 0 and svc.latest_ready_revision == "" and svc.uri == ""
    rev = cr.revisions.get_revision(name=svc.latest_created_revision)
    ready = {c.type_: c for c in rev.conditions}["Ready"]
    assert ready.state == FAILED and getattr(ready, field) == expected and ready.message == "It did not start."
    common = expected if field == "reason" else REASON.REVISION_FAILED
    assert svc.terminal_condition.reason == common


def test_traffic_to_a_failing_revision_is_not_moved(cr: Api) -> None:
    """The same rule when the failing revision was to get a share: the split is stored as asked,
    but `traffic_statuses` stay where traffic was."""
    good = cr.create_ready("svc", template(revision="svc-v1"))
    cr.emulator.control.fail_next_revision("HEALTH_CHECK_CONTAINER_ERROR", "The container failed to listen on PORT.")
    good.template = template(IMAGE2, revision="svc-v2")
    good.traffic = [to_revision("svc-v1", 50), to_revision("svc-v2", 50, tag="canary")]
    with pytest.raises(exceptions.FailedPrecondition) as err:
        cr.update_ready(good)
    assert "Revision 'svc-v2' is not ready" in err.value.message
    bad = cr.get("svc")
    assert len(bad.traffic) == 2
    assert [(t.type_, t.percent) for t in bad.traffic_statuses] == [(LATEST, 100)]


def test_operation_finishes_only_after_n_polls(cr: Api) -> None:
    """ "A pending one has `done=False` and no response; the client then polls
    `google.longrunning.Operations/GetOperation` with the operation name." """
    cr.emulator.control.operation_polls(3)
    op = cr.create("svc")
    assert op.operation.done is False and not op.operation.HasField("response")
    cr.emulator.control.clear_calls()
    svc = finish(op)
    assert svc.observed_generation == 1
    assert [c.method for c in cr.emulator.control.calls] == ["GetOperation"] * 4  # three "not done", then done


def test_operation_error_raises_the_class_of_its_code(cr: Api) -> None:
    """ "A failed operation sets `error` to a `google.rpc.Status`, and the client's `result()` raises
    the matching `google.api_core.exceptions` class" — and the injected failure changes nothing."""
    cr.emulator.control.fail_next_operation(grpc.StatusCode.INTERNAL, "Internal error while deploying.")
    op = cr.create("svc")
    with pytest.raises(exceptions.InternalServerError) as err:
        finish(op)
    assert err.value.message == "Internal error while deploying."
    with cr.raises("NOT_FOUND"):
        cr.get("svc")
    svc = cr.create_ready("svc")
    cr.emulator.control.fail_next_operation(grpc.StatusCode.DEADLINE_EXCEEDED, "Took too long.")
    with pytest.raises(exceptions.DeadlineExceeded):
        finish(cr.services.delete_service(name=svc.name))
    assert cr.get("svc").name == svc.name


@pytest.mark.parametrize(
    "status",
    [
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "ABORTED",
        "PERMISSION_DENIED",
        "UNAVAILABLE",
        "FAILED_PRECONDITION",
        "INVALID_ARGUMENT",
        "RESOURCE_EXHAUSTED",
        "DEADLINE_EXCEEDED",
    ],
)
def test_error_mapping_per_transport(cr: Api, status: str) -> None:
    """testing-without-a-cluster.md, "Error mapping (measured)": each server status raises the
    documented class on each transport (e.g. ALREADY_EXISTS is `AlreadyExists` over gRPC and
    `Conflict` (409) over REST), with the server's message."""
    cr.emulator.control.fail_next("ListServices", getattr(grpc.StatusCode, status), message="Injected.")
    with cr.raises(status) as err:
        list(cr.services.list_services(parent="projects/p/locations/us-central1", retry=None))
    assert err.value.message.endswith("Injected.")


def test_transient_errors_succeed_on_retry(cr: Api) -> None:
    """UNAVAILABLE is transient: a client retry gets through once the faults are used up."""
    cr.create_ready("svc")
    cr.emulator.control.fail_next("GetService", grpc.StatusCode.UNAVAILABLE, count=2)
    fast = retries.Retry(initial=0.01, maximum=0.02, predicate=retries.if_exception_type(exceptions.ServiceUnavailable))
    assert cr.services.get_service(name=cr.name("svc"), retry=fast).name == cr.name("svc")
