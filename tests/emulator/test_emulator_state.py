"""`EmulatorConfig(state_file=...)`: what survives a restart, and atomic, acknowledged writes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import run_v2
from google.iam.v1 import policy_pb2

from tests.emulator.emulator_testkit import IMAGE2, PARENT, Api, ManualExecutor, finish, short, template, to_revision
from tfms.emulator import Emulator, EmulatorConfig, Executor, SimulatedExecutor
from tfms.emulator.persistence import StateFile, StateFileError, decode


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "emulator.json"


def _start(path: Path, executor: Executor | None = None) -> Emulator:
    emulator = Emulator(EmulatorConfig(seed=7, state_file=str(path)), executor=executor)
    emulator.start(rest_port=0)
    return emulator


@pytest.fixture
def first(state_file: Path) -> Iterator[tuple[Emulator, Api]]:
    from tests.emulator.emulator_testkit import connect

    emulator = _start(state_file)
    try:
        with connect(emulator, "grpc") as api:
            yield emulator, api
    finally:
        emulator.stop()


def test_everything_survives_a_restart(state_file: Path, first: tuple[Emulator, Api]) -> None:
    from tests.emulator.emulator_testkit import connect

    emulator, api = first
    svc = api.create_ready("svc", template(revision="svc-v1"))
    svc.template = template(IMAGE2, revision="svc-v2")
    svc.traffic = [to_revision("svc-v1", 90, tag="stable"), to_revision("svc-v2", 10, tag="canary")]
    op = api.update(svc)
    svc = finish(op)
    other = api.create_ready("other")
    first_other = other.latest_created_revision
    policy = api.services.get_iam_policy(request={"resource": svc.name})
    policy.bindings.add(role="roles/run.invoker", members=["allUsers"])
    policy = api.services.set_iam_policy(request={"resource": svc.name, "policy": policy})
    revisions = {r.name: r for r in api.revisions.list_revisions(parent=f"{PARENT}/services/-")}
    emulator.stop()

    executor = SimulatedExecutor()
    again = _start(state_file, executor)
    try:
        for transport in ("grpc", "rest"):  # one state, both transports
            with connect(again, transport) as api2:
                assert api2.get("svc") == svc and api2.get("other") == other
                assert {r.name: r for r in api2.revisions.list_revisions(parent=f"{PARENT}/services/-")} == revisions
                assert api2.services.get_iam_policy(request={"resource": svc.name}) == policy
                assert api2.services.get_operation(request={"name": op.operation.name}).done
        with connect(again, "grpc") as api2:
            # Etags and generations carry on: a stale write is still refused, a fresh one works.
            stale = policy_pb2.Policy(etag=b"stale")
            with pytest.raises(exceptions.Aborted):
                api2.services.set_iam_policy(request={"resource": svc.name, "policy": stale})
            svc.labels["after"] = "restart"
            assert api2.update_ready(svc).generation == 3
            # Generated names keep counting and never repeat.
            other.template.containers[0].image = IMAGE2
            assert short(api2.update_ready(other).latest_created_revision).startswith("other-00002-")
        # Ready revisions were launched again and, once ready, their routes restored.
        assert again.wait_executor_idle()
        relaunched = [launch.revision for launch in executor.launched[:3]]
        assert relaunched == [f"{svc.name}/revisions/svc-v1", f"{svc.name}/revisions/svc-v2", first_other]
        split, tags = executor.routes[svc.name]
        assert split[:2] == [(f"{svc.name}/revisions/svc-v1", 90), (f"{svc.name}/revisions/svc-v2", 10)]
        assert tags == {"stable": f"{svc.name}/revisions/svc-v1", "canary": f"{svc.name}/revisions/svc-v2"}
    finally:
        again.stop()


def test_a_reconciliation_in_flight_finishes_after_restart(state_file: Path) -> None:
    from tests.emulator.emulator_testkit import connect

    manual = ManualExecutor()
    emulator = _start(state_file, manual)
    with connect(emulator, "grpc") as api:
        op = api.create("svc")
        manual.wait_launched(1)
        assert api.get("svc").reconciling
    emulator.stop()  # the revision never reported back

    again = _start(state_file)  # simulated: the relaunched revision becomes ready
    try:
        with connect(again, "rest") as api2:
            svc = api2.get("svc")
            assert again.wait_until(lambda s: not s.services[svc.name].reconciling)
            done = api2.services.get_operation(request={"name": op.operation.name})
            assert done.done and done.response.Is(run_v2.Service.pb().DESCRIPTOR)
            assert api2.get("svc").observed_generation == 1
    finally:
        again.stop()


def test_each_change_is_on_disk_before_the_call_returns(state_file: Path, first: tuple[Emulator, Api]) -> None:
    _, api = first
    op = api.create("svc")
    on_disk = decode(json.loads(state_file.read_text()))
    assert list(on_disk.services) == [api.name("svc")]
    assert op.operation.name in {o.name for o in on_disk.operations}
    finish(op)
    api.services.set_iam_policy(request={"resource": api.name("svc"), "policy": policy_pb2.Policy()})
    saved = decode(json.loads(state_file.read_text()))
    assert saved.services[api.name("svc")].service.observed_generation == 1
    assert api.name("svc") in saved.policies


def test_a_crash_mid_write_keeps_the_last_acknowledged_state(
    state_file: Path, first: tuple[Emulator, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator, api = first
    api.create_ready("kept")
    before = state_file.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(exceptions.InternalServerError):  # not acknowledged: the client sees a failure
        api.create("lost")
    assert emulator.wait_until(lambda s: not s.services[api.name("lost")].reconciling)
    emulator.stop()  # "crash" before any later write could succeed
    monkeypatch.undo()
    assert state_file.read_bytes() == before  # the old document is intact; the temp file is ignored
    again = _start(state_file)
    try:
        assert list(again.state.services) == [api.name("kept")]
    finally:
        again.stop()


def test_one_state_file_one_emulator(state_file: Path, first: tuple[Emulator, Api]) -> None:
    with pytest.raises(StateFileError, match="in use"):
        Emulator(EmulatorConfig(state_file=str(state_file)))


def test_an_unreadable_state_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StateFileError, match="cannot read emulator state"):
        Emulator(EmulatorConfig(state_file=str(bad)))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(StateFileError, match="format"):
        Emulator(EmulatorConfig(state_file=str(other)))
    assert StateFile(tmp_path / "missing.json").load() is None
