"""Traffic lists in one comparable shape, whatever proto3 JSON chose to omit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"

TrafficKey = tuple[str, str, int, str]


def normalize(targets: Iterable[Mapping[str, Any]]) -> list[TrafficKey]:
    """(type, revision, percent, tag) per target, in order; defaults made explicit.

    A LATEST target's revision is dropped: Cloud Run may resolve it in statuses.
    """
    out: list[TrafficKey] = []
    for t in targets:
        kind = str(t.get("type", "")) or (REVISION if t.get("revision") else LATEST)
        revision = "" if kind == LATEST else str(t.get("revision", "")).rsplit("/", 1)[-1]
        out.append((kind, revision, int(t.get("percent", 0) or 0), str(t.get("tag", ""))))
    return out
