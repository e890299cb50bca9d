"""Shared ListServices snapshots, so a resync of N converged services costs one List page per
(project, region) instead of N GetService calls (issue 9).

A snapshot is only ever used to *confirm* that nothing needs doing. Three rules keep it from
deciding anything on stale data:

- a snapshot started before this operator's last write to that (project, region) is dropped,
  so our own changes are never read back from before they happened;
- a service the snapshot shows as absent or still reconciling is read directly (GetService):
  only converged services are served from the snapshot;
- a pass that read from a snapshot and then wants to write raises `StaleRead` instead; the
  caller runs the pass again on direct reads, so every write is planned from a fresh Get.

kopf-free: the handlers choose which passes may use it (resyncs and resumes).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tfms.backends.errors import BackendError
from tfms.reconcile.service import CloudRunAPI

Doc = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger(__name__)
DEFAULT_TTL = 5.0


class ListingAPI(CloudRunAPI, Protocol):
    async def list_services(self, parent: str) -> list[Doc]: ...

    async def delete_service(self, name: str) -> None: ...

    async def set_labels(self, name: str, labels: dict[str, str], etag: str = "") -> None: ...


class StaleRead(RuntimeError):
    """A pass planned a write from snapshot data: run it again with `fresh=True`."""


@dataclass
class _Entry:
    """One List result. Each service is kept as zlib-compressed JSON and decoded per lookup: as
    dicts, a page of 1,000 services is ~12 MB of small objects (the bench's operator at 1,000
    objects held ~11 MiB more RSS with them), compressed ~1.1 MB; encoding a page costs ~50 ms,
    a lookup ~15 µs. Each lookup also gets its own copy, so no pass can change what another reads."""

    started: float  # when the List was sent: anything written after this is not in it
    services: dict[str, bytes]  # by service ID (names may carry a project number, not its ID)


def _split(name: str) -> tuple[str, str]:
    parent, _, service_id = name.rpartition("/services/")
    return parent, service_id


class ServiceSnapshots:
    """Per-(project, region) ListServices results, shared by every pass for `ttl` seconds.

    One List is in flight per parent at a time (concurrent passes await the same one), so the
    burst of resyncs of objects created together costs one page per (project, region)."""

    def __init__(self, api: ListingAPI, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[_Entry | Exception]] = {}
        self._written: dict[str, float] = {}

    def reader(self, *, fresh: bool = False) -> SnapshotReader:
        """The API for one pass; `fresh` passes read directly but still mark their writes."""
        return SnapshotReader(self, fresh=fresh or self.ttl <= 0)

    def wrote(self, name: str) -> None:
        """Record a write: snapshots of that (project, region) taken before now are stale."""
        parent, _ = _split(name)
        self._written[parent] = self._clock()
        self._entries.pop(parent, None)

    def _valid(self, parent: str, entry: _Entry | None) -> bool:
        return (entry is not None and self._clock() - entry.started < self.ttl
                and entry.started > self._written.get(parent, float("-inf")))

    async def lookup(self, name: str) -> Doc | None:
        """The service as the shared snapshot has it, or None (absent, or no usable snapshot)."""
        parent, service_id = _split(name)
        if not parent:
            return None
        now = self._clock()
        for key in [k for k, e in self._entries.items() if now - e.started >= self.ttl]:
            del self._entries[key]  # expired: keep memory bounded by what is in use
        entry = self._entries.get(parent)
        if not self._valid(parent, entry):
            task = self._inflight.get(parent)
            if task is None:
                task = asyncio.ensure_future(self._list(parent))
                self._inflight[parent] = task
                task.add_done_callback(functools.partial(self._finished, parent))
            listed = await asyncio.shield(task)
            if isinstance(listed, BackendError):
                log.debug("ListServices %s failed (%s); reading services one by one", parent, listed)
                return None
            if isinstance(listed, Exception):
                raise listed
            entry = listed
            if not self._valid(parent, entry):
                return None  # a write landed while the List was in flight
            self._entries[parent] = entry
        assert entry is not None
        raw = entry.services.get(service_id)
        return None if raw is None else _decode(raw)

    def _finished(self, parent: str, _task: asyncio.Task[_Entry | Exception]) -> None:
        self._inflight.pop(parent, None)

    async def _list(self, parent: str) -> _Entry | Exception:
        """Returns its failure rather than raising it: the task outlives the passes awaiting it, and a
        task that ends in an exception nobody awaited fails kopf's own shutdown (it re-raises them)."""
        started = self._clock()
        try:
            docs = await self.api.list_services(parent)
        except Exception as exc:
            return exc
        return _Entry(started, {_split(str(d.get("name", "")))[1]: _encode(d) for d in docs})


def _encode(doc: Doc) -> bytes:
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)


def _decode(raw: bytes) -> Doc:
    doc: Doc = json.loads(zlib.decompress(raw))
    return doc


class SnapshotReader:
    """`CloudRunAPI` for one reconcile pass: converged services come from the snapshot."""

    def __init__(self, snapshots: ServiceSnapshots, *, fresh: bool) -> None:
        self._snapshots = snapshots
        self._api = snapshots.api
        self.fresh = fresh
        self.served = 0  # services read from a snapshot by this pass

    async def get_service(self, name: str) -> Doc | None:
        if not self.fresh:
            doc = await self._snapshots.lookup(name)
            if doc is not None and not doc.get("reconciling"):
                self.served += 1
                return doc
        return await self._api.get_service(name)

    def _before_write(self, name: str) -> None:
        if self.served:
            raise StaleRead(f"{name}: a write was planned from a snapshot; plan it again from a fresh read")
        self.fresh = True  # what this pass reads after its write must show the write

    async def create_service(self, parent: str, service_id: str, body: Doc) -> str:
        self._before_write(f"{parent}/services/{service_id}")
        try:
            return await self._api.create_service(parent, service_id, body)
        finally:
            self._snapshots.wrote(f"{parent}/services/{service_id}")

    async def update_service(self, name: str, body: Doc, etag: str = "") -> str:
        self._before_write(name)
        try:
            return await self._api.update_service(name, body, etag)
        finally:
            self._snapshots.wrote(name)

    async def delete_service(self, name: str) -> None:
        self._before_write(name)
        try:
            await self._api.delete_service(name)
        finally:
            self._snapshots.wrote(name)

    async def set_labels(self, name: str, labels: dict[str, str], etag: str = "") -> None:
        self._before_write(name)
        try:
            await self._api.set_labels(name, labels, etag)
        finally:
            self._snapshots.wrote(name)


async def with_snapshot(snapshots: ServiceSnapshots, run: Callable[[SnapshotReader], Awaitable[T]]) -> T:
    """Run a pass on the snapshot; if it wants to write, run it again on fresh reads."""
    try:
        return await run(snapshots.reader())
    except StaleRead as exc:
        log.debug("%s", exc)
    return await run(snapshots.reader(fresh=True))


__all__ = ["ServiceSnapshots", "SnapshotReader", "StaleRead", "with_snapshot"]
