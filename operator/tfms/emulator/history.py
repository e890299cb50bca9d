"""A timestamped record of how each service's traffic and annotations changed.

Cloud Run keeps only the current service, but a rollout is a story over time: tools that
keep their state in a service annotation (tfms keeps its canary in `tfms.dev/rollout`)
rewrite it at every step. Recording each acknowledged change with its wall-clock time lets
the status page draw that story without the page having been open while it happened.
Memory only (like the request metrics) and bounded per service.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from google.cloud import run_v2

MAX_CHANGES = 1000

_Key = tuple[Any, ...]


def _traffic(service: run_v2.Service) -> list[dict[str, Any]]:
    return [
        {
            "type": run_v2.TrafficTargetAllocationType(t.type_).name,
            "revision": t.revision,
            "percent": t.percent,
            "tag": t.tag,
        }
        for t in service.traffic_statuses
    ]


def _key(service: run_v2.Service) -> _Key:
    """What a change is: anything a timeline shows (not etags or operation polls)."""
    return (
        tuple(sorted(service.annotations.items())),
        tuple((t.type_, t.revision, t.percent, t.tag) for t in service.traffic_statuses),
        service.latest_ready_revision,
        service.latest_created_revision,
        service.generation,
    )


class ServiceHistory:
    """Changes per service full name; `observe` runs under the control plane's lock."""

    def __init__(self, clock: Callable[[], float] = time.time, limit: int = MAX_CHANGES) -> None:
        self._clock = clock
        self._limit = limit
        self._lock = threading.Lock()
        self._last: dict[str, _Key] = {}
        self._changes: dict[str, deque[dict[str, Any]]] = {}

    def observe(self, services: Mapping[str, run_v2.Service]) -> None:
        """Record every service whose timeline-relevant fields differ from the last record."""
        now = self._clock()
        with self._lock:
            for name in set(self._last) - set(services):  # deleted: its story ends with it
                del self._last[name]
                del self._changes[name]
            for name, service in services.items():
                key = _key(service)
                if self._last.get(name) == key:
                    continue
                self._last[name] = key
                changes = self._changes.setdefault(name, deque(maxlen=self._limit))
                changes.append(
                    {
                        "t": round(now, 3),
                        "generation": service.generation,
                        "annotations": dict(service.annotations),
                        "traffic": _traffic(service),
                        "latestReadyRevision": service.latest_ready_revision,
                        "latestCreatedRevision": service.latest_created_revision,
                    }
                )

    def changes(self, service: str, since: float = 0.0) -> list[dict[str, Any]] | None:
        """The changes of `service` at or after `since`, oldest first; None for an unknown service."""
        with self._lock:
            changes = self._changes.get(service)
            if changes is None:
                return None
            return [dict(c) for c in changes if c["t"] >= since]
