"""Kubernetes-style conditions whose timestamps move only on transitions (B-035).

A status that is recomputed every resync must come out byte-identical when nothing changed,
or every resync would write the object and wake every watcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

READY: Final = "Ready"
VALIDATED: Final = "Validated"
SERVICE_READY: Final = "ServiceReady"
TRAFFIC_READY: Final = "TrafficReady"
MODEL_CHECKED: Final = "ModelChecked"  # pre-flight of spec.model.basePath (tfms.reconcile.preflight)
ORDER: Final = (READY, VALIDATED, MODEL_CHECKED, SERVICE_READY, TRAFFIC_READY)

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""


def merge(previous: Sequence[Mapping[str, Any]] | None, current: Iterable[Condition], *, now: str,
          generation: int) -> list[dict[str, Any]]:
    """New conditions list: `lastTransitionTime` kept unless the status flipped."""
    before = {c.get("type"): c for c in previous or [] if isinstance(c, Mapping)}
    out = []
    for cond in sorted(current, key=lambda c: ORDER.index(c.type) if c.type in ORDER else len(ORDER)):
        old = before.get(cond.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == cond.status else None
        out.append({
            "type": cond.type, "status": cond.status, "reason": cond.reason, "message": cond.message,
            "lastTransitionTime": since or now, "observedGeneration": generation,
        })
    return out


def camel(enum_name: str) -> str:
    """Cloud Run's reason enums (CONTAINER_MISSING) as Kubernetes reasons (ContainerMissing)."""
    return "".join(part.capitalize() for part in enum_name.lower().split("_") if part)
