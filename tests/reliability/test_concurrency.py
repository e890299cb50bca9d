"""Issue 10, item 4, in the service layer: a spec edited while a pass is writing ends in the
newest spec's state. Two passes of one object overlap whenever `tfms apply` and the operator
meet, or a replica takes over while the old one's write is still on its way: the older pass's
write must not win. (Concurrent IAM writers: tests/integration/test_iam.py; two operator
replicas with kopf peering and a spec edit during a create: tests/kube/test_reliability_operator.py.)
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from tests.reliability.crashkit import DEFAULTS, body_for, live_split, revision_of, revisions, service_name
from tfms.backends.cloudrun import CloudRun
from tfms.emulator import Emulator
from tfms.reconcile.objects import Outcome, reconcile_object

SPEC: dict[str, Any] = {
    "project": "example-project", "region": "us-central1",
    "model": {"name": "fraud", "basePath": "gs://example-bucket/models/fraud", "version": 1},
    "runtime": {"image": "tensorflow/serving:2.19.0"},
}


def _version(n: int) -> dict[str, Any]:
    return {**SPEC, "runtime": {"image": "tensorflow/serving:2.19.0", "env": [{"name": "V", "value": str(n)}]}}


class HeldWrites:
    """The backend of the older pass: it reads at once, but its writes wait for `release`."""

    def __init__(self, inner: CloudRun) -> None:
        self._inner = inner
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _hold(self) -> None:
        self.waiting.set()
        await self.release.wait()

    async def create_service(self, parent: str, service_id: str, body: dict[str, Any]) -> str:
        await self._hold()
        return await self._inner.create_service(parent, service_id, body)

    async def update_service(self, name: str, body: dict[str, Any], etag: str = "") -> str:
        await self._hold()
        return await self._inner.update_service(name, body, etag)


async def _converge(api: CloudRun, emulator: Emulator, body: dict[str, Any]) -> Outcome:
    for _ in range(50):
        outcome = await reconcile_object(api, body, DEFAULTS, now="2026-12-04T00:00:00Z")
        body["status"] = outcome.status
        if outcome.done:
            return outcome
        await asyncio.to_thread(emulator.wait_until, lambda s: not any(x.reconciling for x in s.services.values()), 5)
    raise AssertionError(f"not converged: {outcome}")


@pytest.mark.parametrize("start", ["create", "update"])
async def test_an_older_pass_writing_late_never_wins(backend: CloudRun, emulator: Emulator, start: str) -> None:
    name = f"edited-{start}"
    body = body_for(name, _version(1), 1, "00000000-0000-4000-8000-000000000e01")
    if start == "update":
        await _converge(backend, emulator, body)
    older = body_for(name, _version(2), 2, "00000000-0000-4000-8000-000000000e01")
    newer = body_for(name, _version(3), 3, "00000000-0000-4000-8000-000000000e01")
    held = HeldWrites(backend)
    # The older pass (spec v2) has read Cloud Run and is about to write when the spec becomes v3.
    late = asyncio.create_task(reconcile_object(held, older, DEFAULTS, now="t0"))  # type: ignore[arg-type]
    await asyncio.wait_for(held.waiting.wait(), 10)
    await _converge(backend, emulator, newer)  # the newer pass writes v3 and sees it converge
    held.release.set()
    stale = await asyncio.wait_for(late, 10)
    # Its write was refused: the etag it read is stale (update) or the service exists (create).
    assert stale.transient and not stale.permanent, stale
    # The object holds v3 now; its next pass (kopf's retry) finds v3 in place and writes nothing.
    writes = sum(1 for c in emulator.control.calls if c.method in ("CreateService", "UpdateService"))
    final = await _converge(backend, emulator, newer)
    assert final.ready and final.status["observedGeneration"] == 3
    assert sum(1 for c in emulator.control.calls if c.method in ("CreateService", "UpdateService")) == writes
    v1, v2, v3 = (revision_of(name, _version(n)) for n in (1, 2, 3))
    assert live_split(emulator, name) == {v3: 100}
    assert revisions(emulator, name) == sorted([v3] if start == "create" else [v1, v3])  # v2 never existed
    svc = emulator.state.services[service_name(name)]
    assert svc.template.revision == v3 and v2 not in str(svc.template)


async def test_many_spec_edits_while_passes_overlap_end_in_the_last_spec(backend: CloudRun,
                                                                          emulator: Emulator) -> None:
    """Ten edits, each starting a pass before the previous one finished (no ordering between
    them); after the passes settle, one more pass of the last spec converges on it."""
    name = "edited-many"
    uid = "00000000-0000-4000-8000-000000000e02"
    await _converge(backend, emulator, body_for(name, _version(0), 1, uid))
    passes = [asyncio.create_task(reconcile_object(backend, body_for(name, _version(n), n + 1, uid), DEFAULTS,
                                                   now="t0")) for n in range(1, 11)]
    outcomes = await asyncio.gather(*passes)
    assert not any(o.permanent for o in outcomes), [o.permanent for o in outcomes if o.permanent]
    last = body_for(name, _version(10), 11, uid)
    final = await _converge(backend, emulator, last)
    assert final.ready and live_split(emulator, name) == {revision_of(name, _version(10)): 100}
    assert emulator.state.services[service_name(name)].template.revision == revision_of(name, _version(10))


# ---- the operator's own concurrency: peering priorities and a bound on passes in flight --------

def test_replicas_get_distinct_peering_priorities() -> None:
    """Regression: `tfms operator --peering` left kopf's priority at 0 in every replica, and kopf
    pauses all operators that see a live peer of the same priority: the Deployment's two replicas
    would both stand still. Each replica now draws its own (or takes TFMS_PEERING_PRIORITY)."""
    from tfms.handlers.run import peering_priority

    assert len({peering_priority({}) for _ in range(50)}) == 50
    assert peering_priority({"TFMS_PEERING_PRIORITY": "7"}) == 7
    with pytest.raises(SystemExit, match="TFMS_PEERING_PRIORITY"):
        peering_priority({"TFMS_PEERING_PRIORITY": "high"})


async def test_passes_in_flight_are_bounded() -> None:
    """Regression for the 1,000-object burst that ended in CloudRunUnavailable: every pass (and
    deletion) goes through one semaphore of TFMS_MAX_CONCURRENT_PASSES, so a burst queues in the
    operator instead of hitting Cloud Run all at once."""
    import kopf

    from tests.conftest import base_object
    from tfms.handlers import operator as handlers
    from tfms.handlers.config import OperatorConfig

    config = OperatorConfig.from_env({"TFMS_MAX_CONCURRENT_PASSES": "3"})
    assert config.max_concurrent_passes == 3 and OperatorConfig.from_env({}).max_concurrent_passes == 32
    gate = asyncio.Event()
    state = {"in_flight": 0, "peak": 0}

    class Slow:
        async def get_service(self, name: str) -> dict[str, Any] | None:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            await gate.wait()
            state["in_flight"] -= 1
            return None

        async def create_service(self, parent: str, service_id: str, body: dict[str, Any]) -> str:
            return "operations/1"

    class Snapshots:
        def reader(self, fresh: bool = False) -> Slow:
            return Slow()

    memo = kopf.Memo(config=config, snapshots=Snapshots(), cloudrun=Slow(), model_check=None, metrics=None,
                     passes=asyncio.Semaphore(config.max_concurrent_passes))
    bodies = []
    for i in range(12):
        obj = base_object()
        obj["metadata"].update(name=f"burst-{i}", generation=1, uid=f"00000000-0000-4000-8000-{i:012d}")
        bodies.append(kopf.Body(obj))  # type: ignore[arg-type]
    tasks = [asyncio.create_task(handlers._pass(memo, b, snapshot=False)) for b in bodies]
    async with asyncio.timeout(5):
        while state["in_flight"] < 3:
            await asyncio.sleep(0)  # let the first three passes reach Cloud Run
    for _ in range(100):  # and give the other nine every chance to get past the bound
        await asyncio.sleep(0)
    assert state["in_flight"] == 3
    gate.set()
    outcomes = await asyncio.gather(*tasks)
    assert state["peak"] == 3 and len(outcomes) == 12 and not any(o.permanent for o in outcomes)


async def test_a_transient_resync_retries_before_the_next_resync() -> None:
    """Regression (the other half of the burst's CloudRunUnavailable): a resync that met a
    transient error published Ready=False and only logged, so the object stayed that way for a
    whole resync interval. It now raises kopf.TemporaryError: kopf's timer looks again after the
    operator's backoff, never later than the next resync."""
    import kopf

    from tests.conftest import base_object
    from tfms.backends.errors import Transient
    from tfms.handlers import operator as handlers
    from tfms.handlers.config import OperatorConfig
    from tfms.reconcile.snapshot import ServiceSnapshots

    class Unavailable:
        async def list_services(self, parent: str) -> list[dict[str, Any]]:
            raise Transient(f"list services in {parent}: 503 unavailable", "ServiceUnavailable")

        async def get_service(self, name: str) -> dict[str, Any] | None:
            raise Transient(f"get {name}: 503 unavailable", "ServiceUnavailable")

    config = OperatorConfig(resync_seconds=60.0, retry_initial=2.0, retry_max=300.0)
    api = Unavailable()
    memo = kopf.Memo(config=config, snapshots=ServiceSnapshots(api, ttl=5.0), cloudrun=api,  # type: ignore[arg-type]
                     model_check=None, metrics=None, passes=asyncio.Semaphore(4))
    obj = base_object()
    obj["metadata"].update(generation=1, uid="00000000-0000-4000-8000-00000000abcd")
    obj["status"] = {"observedGeneration": 1}
    for retry, bound in ((0, 2.0), (3, 16.0), (12, 60.0)):
        patch = kopf.Patch()
        with pytest.raises(kopf.TemporaryError) as caught:
            resync = cast(Any, handlers.resync)  # kopf's decorator returns the function itself
            await resync(body=kopf.Body(cast(Any, obj)), patch=patch, memo=memo, retry=retry)
        assert caught.value.delay is not None and 0 < caught.value.delay <= bound
        ready = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "CloudRunUnavailable")
