"""The async google-cloud-run clients (grpc.aio) against the emulator, as the operator uses them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.api_core.future import async_future
from google.cloud import run_v2
from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcAsyncIOTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcAsyncIOTransport
from google.iam.v1 import policy_pb2

from tests.emulator.emulator_testkit import IMAGE2, PARENT, SUCCEEDED, short, template, to_revision
from tfms.emulator import Emulator

FAST_ASYNC = async_future.DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05)


async def _result(op: Any) -> Any:
    op._retry = FAST_ASYNC  # AsyncOperation.result() has no polling argument (see the reference notes)
    return await op.result(timeout=5)


@pytest.fixture
async def aio(emulator: Emulator) -> AsyncIterator[tuple[run_v2.ServicesAsyncClient, run_v2.RevisionsAsyncClient]]:
    channel = grpc.aio.insecure_channel(emulator.address)  # bound to this test's loop
    services = run_v2.ServicesAsyncClient(transport=ServicesGrpcAsyncIOTransport(channel=channel))
    revisions = run_v2.RevisionsAsyncClient(transport=RevisionsGrpcAsyncIOTransport(channel=channel))
    yield services, revisions
    await channel.close()


async def test_async_lifecycle(aio: tuple[run_v2.ServicesAsyncClient, run_v2.RevisionsAsyncClient]) -> None:
    services, revisions = aio
    op = await services.create_service(
        parent=PARENT, service_id="svc", service=run_v2.Service(template=template(revision="svc-v1"))
    )
    svc = await _result(op)
    assert svc.terminal_condition.state == SUCCEEDED and short(svc.latest_ready_revision) == "svc-v1"

    svc.template = template(IMAGE2, revision="svc-v2")
    svc.traffic = [to_revision("svc-v1", 90, tag="stable"), to_revision("svc-v2", 10, tag="canary")]
    svc = await _result(await services.update_service(service=svc))
    assert [(t.revision, t.percent) for t in svc.traffic_statuses] == [("svc-v1", 90), ("svc-v2", 10)]
    assert svc.observed_generation == svc.generation == 2

    svc.template.containers[0].image = "changed:1"  # same name, different template
    with pytest.raises(exceptions.AlreadyExists):
        await services.update_service(service=svc)

    names = [short(r.name) async for r in await revisions.list_revisions(parent=svc.name)]
    assert names == ["svc-v1", "svc-v2"]
    with pytest.raises(exceptions.FailedPrecondition):
        await revisions.delete_revision(name=f"{svc.name}/revisions/svc-v1")

    listed = [s.name async for s in await services.list_services(parent=PARENT)]
    assert listed == [svc.name]
    deleted = await _result(await services.delete_service(name=svc.name))
    assert deleted.name == svc.name
    with pytest.raises(exceptions.NotFound):
        await services.get_service(name=svc.name)


async def test_async_failed_revision_and_details(
    aio: tuple[run_v2.ServicesAsyncClient, run_v2.RevisionsAsyncClient], emulator: Emulator
) -> None:
    services, _ = aio
    emulator.control.fail_next_revision("CONTAINER_MISSING", "Image not found.")
    op = await services.create_service(parent=PARENT, service_id="svc", service=run_v2.Service(template=template()))
    # Unlike the sync Operation, AsyncOperation raises the base GoogleAPICallError for an LRO
    # error; the code is only on the google.rpc.Status in `errors`/`response`.
    with pytest.raises(exceptions.GoogleAPICallError) as err:
        await _result(op)
    assert err.value.response.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert err.value.message.endswith("is not ready and cannot serve traffic. Image not found.")
    with pytest.raises(exceptions.InvalidArgument) as bad:
        await services.create_service(parent=PARENT, service_id="Bad", service=run_v2.Service(template=template()))
    assert [v.field for d in bad.value.details for v in d.field_violations] == ["service_id"]


async def test_async_iam(aio: tuple[run_v2.ServicesAsyncClient, run_v2.RevisionsAsyncClient]) -> None:
    services, _ = aio
    svc = await _result(
        await services.create_service(parent=PARENT, service_id="svc", service=run_v2.Service(template=template()))
    )
    policy = await services.get_iam_policy(request={"resource": svc.name})
    policy.bindings.append(policy_pb2.Binding(role="roles/run.invoker", members=["allUsers"]))
    stored = await services.set_iam_policy(request={"resource": svc.name, "policy": policy})
    assert list(stored.bindings[0].members) == ["allUsers"]
    with pytest.raises(exceptions.Aborted):
        await services.set_iam_policy(request={"resource": svc.name, "policy": policy})
