"""Operations service and the control interface: faults, delays, poll counts, the call log."""

from __future__ import annotations

import time

import grpc
import pytest
from google.api_core import exceptions
from google.api_core import retry as retries
from google.cloud import run_v2
from google.longrunning import operations_pb2

from tests.emulator.emulator_testkit import PARENT, Api, ManualExecutor, finish
from tfms.emulator import Emulator


def test_unavailable_then_success_with_fast_retry(api: Api, emulator: Emulator) -> None:
    api.create_ready("svc")
    emulator.control.clear_calls()
    emulator.control.fail_next("GetService", grpc.StatusCode.UNAVAILABLE, count=2, message="try later")
    fast = retries.Retry(initial=0.01, maximum=0.02, predicate=retries.if_exception_type(exceptions.ServiceUnavailable))
    svc = api.services.get_service(name=api.name("svc"), retry=fast)
    assert svc.name == api.name("svc")
    assert [c.method for c in emulator.control.calls] == ["GetService"] * 3
    # Without retry the fault surfaces as the client's exception class, message intact.
    emulator.control.fail_next("GetService", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(exceptions.ServiceUnavailable) as err:
        api.services.get_service(name=api.name("svc"), retry=None)
    assert err.value.message == "Injected fault."


def test_fault_happens_before_any_state_change(api: Api, emulator: Emulator) -> None:
    emulator.control.fail_next("CreateService", grpc.StatusCode.RESOURCE_EXHAUSTED, message="quota")
    with pytest.raises(exceptions.ResourceExhausted):
        api.create("svc")
    assert emulator.state.services == {}
    assert api.create_ready("svc").generation == 1


def test_calls_are_recorded_with_requests(api: Api, emulator: Emulator) -> None:
    svc = api.create_ready("svc")
    api.get("svc")
    methods = [c.method for c in emulator.control.calls]
    assert methods[0] == "CreateService" and methods[-1] == "GetService"
    assert set(methods[1:-1]) <= {"GetOperation"}
    (create,) = emulator.control.calls_to("CreateService")
    assert isinstance(create, run_v2.CreateServiceRequest)
    assert create.parent == PARENT and create.service_id == "svc"
    assert emulator.control.calls_to("GetService")[0].name == svc.name
    metadata = dict(emulator.control.call_metadata[0])
    assert metadata["x-goog-request-params"] == "location=us-central1"  # the routing header
    with pytest.raises(ValueError, match="unknown RPC"):
        emulator.control.fail_next("CreateServce", grpc.StatusCode.INTERNAL)


def test_delay(api: Api, emulator: Emulator) -> None:
    api.create_ready("svc")
    emulator.control.delay("GetService", 0.2)
    started = time.monotonic()
    api.get("svc")
    assert time.monotonic() - started >= 0.2
    emulator.control.delay("GetService", 0)
    started = time.monotonic()
    api.get("svc")
    assert time.monotonic() - started < 0.2


def test_operations_service(api: Api, emulator: Emulator) -> None:
    op = api.create("svc")
    finish(op)
    name = op.operation.name
    got = api.services.get_operation(request={"name": name})
    assert got.done and got.response.Is(run_v2.Service.pb().DESCRIPTOR)
    assert got.metadata.Is(run_v2.Service.pb().DESCRIPTOR)
    listed = api.services.list_operations(request={"name": PARENT})
    assert [o.name for o in listed.operations] == [name]
    raw = api.services.wait_operation(request=operations_pb2.WaitOperationRequest(name=name))
    # The generated transport registers WaitOperation with no response deserializer: raw bytes come back.
    assert operations_pb2.Operation.FromString(raw).done
    api.services.delete_operation(request={"name": name})
    with pytest.raises(exceptions.NotFound):
        api.services.get_operation(request={"name": name})
    with pytest.raises(exceptions.NotFound):
        api.services.delete_operation(request={"name": name})


def test_wait_operation_blocks_until_done(manual_api: Api) -> None:
    executor = manual_api.emulator.executor
    assert isinstance(executor, ManualExecutor)
    op = manual_api.create("svc")
    launch = executor.wait_launched(1)
    wait = manual_api.services.wait_operation
    request = operations_pb2.WaitOperationRequest(name=op.operation.name, timeout={"nanos": 50_000_000})
    assert not operations_pb2.Operation.FromString(wait(request=request)).done
    executor.ready(launch.revision)
    done = operations_pb2.Operation.FromString(wait(request={"name": op.operation.name}))
    assert done.done and not done.HasField("error")


def test_delete_revision_operation_carries_the_revision(api: Api) -> None:
    svc = api.create_ready("svc")
    first = svc.latest_created_revision
    svc.template.containers[0].image = "other:1"
    api.update_ready(svc)
    op = api.revisions.delete_revision(name=first)
    assert op.operation.response.Is(run_v2.Revision.pb().DESCRIPTOR)
    assert finish(op).name == first


def test_fail_next_operation_on_delete_revision_changes_nothing(api: Api, emulator: Emulator) -> None:
    svc = api.create_ready("svc")
    first = svc.latest_created_revision
    svc.template.containers[0].image = "other:1"
    api.update_ready(svc)
    emulator.control.fail_next_operation(grpc.StatusCode.UNAVAILABLE, "Try again.")
    with pytest.raises(exceptions.ServiceUnavailable):
        finish(api.revisions.delete_revision(name=first))
    assert api.revisions.get_revision(name=first).name == first
    assert finish(api.revisions.delete_revision(name=first)).name == first  # used up: the next one works
    with pytest.raises(ValueError, match="non-OK"):
        emulator.control.fail_next_operation(grpc.StatusCode.OK)
    assert {c.transport for c in emulator.control.calls} == {"grpc"}


def test_held_counts_calls_asleep_in_their_delay(api: Api, emulator: Emulator) -> None:
    import threading

    api.create_ready("svc")
    emulator.control.delay("GetService", 0.5)
    getter = threading.Thread(target=api.get, args=("svc",))
    getter.start()
    deadline = time.monotonic() + 10
    while emulator.control.held("GetService") != 1:  # the call arrives, then sleeps
        assert time.monotonic() < deadline, "the delayed call never arrived"
        time.sleep(0.01)
    getter.join(10)
    assert emulator.control.held("GetService") == 0 and emulator.control.held("CreateService") == 0
