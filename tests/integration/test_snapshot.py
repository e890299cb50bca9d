"""Shared ListServices snapshots (issue 9): a resync of many converged services costs one List
page per project+region, never a write, and a write is never planned from snapshot data."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from typing import Any

from tests.conftest import base_object
from tfms.api.defaults import Defaults
from tfms.backends.cloudrun import CloudRun
from tfms.emulator import Emulator
from tfms.reconcile.objects import Outcome, reconcile_object
from tfms.reconcile.snapshot import ServiceSnapshots, SnapshotReader, with_snapshot

DEFAULTS = Defaults()
WRITES = {"CreateService", "UpdateService", "DeleteService", "SetIamPolicy"}


def _body(name: str, project: str = "example-project") -> dict[str, Any]:
    obj = base_object(project=project)
    obj["metadata"].update(name=name, generation=1, uid=f"uid-{name}")
    obj["status"] = {}
    return obj


async def _converge(api: CloudRun, body: dict[str, Any]) -> None:
    for _ in range(200):
        outcome = await reconcile_object(api, body, DEFAULTS, now="t0")
        body["status"] = outcome.status
        if outcome.done:
            assert outcome.ready
            return
    raise AssertionError("not converged")


def _calls(emulator: Emulator) -> Counter[str]:
    return Counter(c.method for c in emulator.control.calls)


async def test_resync_of_converged_services_is_one_list_per_project(backend: CloudRun, emulator: Emulator) -> None:
    bodies = [_body(f"svc-{i}", project=f"proj-{i % 2}") for i in range(6)]
    for body in bodies:
        await _converge(backend, body)
    emulator.control.clear_calls()
    snapshots = ServiceSnapshots(backend, ttl=60)

    async def resync(body: dict[str, Any]) -> Outcome:
        return await with_snapshot(snapshots, lambda api: reconcile_object(api, body, DEFAULTS, now="t1"))

    outcomes = await asyncio.gather(*(resync(b) for b in bodies))
    assert all(o.ready and o.done and not o.events for o in outcomes)
    assert all(o.status == b["status"] for o, b in zip(outcomes, bodies, strict=True))  # same as a direct read
    assert _calls(emulator) == {"ListServices": 2}  # one page per project, shared by concurrent passes


async def test_a_pass_that_would_write_is_planned_again_from_a_fresh_read(
        backend: CloudRun, emulator: Emulator) -> None:
    body = _body("drifty")
    await _converge(backend, body)
    snapshots = ServiceSnapshots(backend, ttl=60)
    assert (await snapshots.lookup(body["status"]["service"])) is not None  # snapshot taken, then changed:
    changed = copy.deepcopy(body)
    changed["spec"]["scaling"] = {"maxInstances": 7}
    changed["metadata"]["generation"] = 2
    emulator.control.clear_calls()
    readers: list[SnapshotReader] = []

    async def run(api: SnapshotReader) -> Outcome:
        readers.append(api)
        return await reconcile_object(api, changed, DEFAULTS, now="t1")

    outcome = await with_snapshot(snapshots, run)
    assert [r.fresh for r in readers] == [False, True]
    calls = _calls(emulator)
    assert calls["UpdateService"] == 1 and calls["GetService"] >= 1  # the write followed a direct read
    assert any(e.reason == "RevisionCreated" for e in outcome.events)
    # Our write made the old snapshot stale: the next lookup lists again.
    emulator.control.clear_calls()
    assert (await snapshots.lookup(body["status"]["service"])) is not None
    assert _calls(emulator) == {"ListServices": 1}


async def test_reconciling_or_absent_services_are_read_directly(backend: CloudRun, emulator: Emulator) -> None:
    snapshots = ServiceSnapshots(backend, ttl=60)
    body = _body("fresh")
    emulator.control.clear_calls()
    outcome = await with_snapshot(snapshots, lambda api: reconcile_object(api, body, DEFAULTS, now="t0"))
    calls = _calls(emulator)
    # Absent from the snapshot -> a direct Get before the create, so the create is not refused as stale.
    assert calls["ListServices"] == 1 and calls["GetService"] >= 1 and calls["CreateService"] == 1
    assert [e.reason for e in outcome.events][:1] == ["Created"]
    assert sum(n for m, n in calls.items() if m in WRITES) == 1


async def test_ttl_zero_turns_snapshots_off(backend: CloudRun, emulator: Emulator) -> None:
    body = _body("plain")
    await _converge(backend, body)
    emulator.control.clear_calls()
    snapshots = ServiceSnapshots(backend, ttl=0)
    outcome = await with_snapshot(snapshots, lambda api: reconcile_object(api, body, DEFAULTS, now="t1"))
    assert outcome.ready and _calls(emulator) == {"GetService": 1}


async def test_a_closed_client_fails_the_pass_not_the_shared_list_task(emulator: Emulator) -> None:
    """Shutdown closes the channel while resyncs still run: each pass gets our Transient error, and
    the shared List task itself ends cleanly (kopf re-raises any loose task's exception at exit)."""
    from tfms.backends.errors import Transient

    closed = CloudRun.connect(emulator.address)
    await closed.close()
    snapshots = ServiceSnapshots(closed, ttl=60)
    reader = snapshots.reader()
    tasks_before = asyncio.all_tasks()
    try:
        await reader.get_service("projects/p/locations/us-central1/services/svc")
    except Transient as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("a closed client answered")
    loose = [t for t in asyncio.all_tasks() - tasks_before if t.done() and not t.cancelled() and t.exception()]
    assert loose == []


async def test_an_unexpected_list_failure_reaches_the_pass() -> None:
    class Broken:
        async def list_services(self, parent: str) -> list[dict[str, Any]]:
            raise RuntimeError(f"bug listing {parent}")

    snapshots = ServiceSnapshots(Broken(), ttl=60)  # type: ignore[arg-type]
    try:
        await snapshots.lookup("projects/p/locations/r/services/svc")
    except RuntimeError as exc:
        assert str(exc) == "bug listing projects/p/locations/r"
    else:
        raise AssertionError("the failure was swallowed")
