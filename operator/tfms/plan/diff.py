"""Owned-field differences between a desired and a live Cloud Run service.

Only what tfms renders is compared: fields Cloud Run fills in by itself (defaults, system
annotations such as run.googleapis.com/operation-id, output-only fields) are absent from
the desired document and so can never show up as drift.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tfms.plan.traffic import normalize
from tfms.render.cloudrun import RenderedService

_ZERO: tuple[Any, ...] = (0, False, "", [], {})


@dataclass(frozen=True)
class Change:
    path: str
    live: Any
    desired: Any

    def __str__(self) -> str:
        return f"{self.path}: {self.live!r} -> {self.desired!r}"


def differences(want: Any, have: Any, path: str) -> Iterator[Change]:
    """Where `have` disagrees with `want`, looking only at what `want` sets."""
    if have is None and want in _ZERO:
        return  # proto3 JSON omits zero values
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            yield Change(path, have, want)
            return
        for key, value in want.items():
            yield from differences(value, have.get(key), f"{path}.{key}")
        return
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            yield Change(path, have, want)
            return
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            yield from differences(w, h, f"{path}[{i}]")
        return
    if want != have:
        yield Change(path, have, want)


def owned_changes(desired: RenderedService, live: Mapping[str, Any]) -> list[Change]:
    """Every owned field whose live value differs, template first."""
    body = desired.body
    changes = list(differences(body["template"], live.get("template") or {}, "template"))
    for key, value in body.items():
        if key in ("template", "traffic"):
            continue
        changes.extend(differences(value, live.get(key), key))
    live_traffic = live.get("traffic") or []
    if normalize(live_traffic) != normalize(body.get("traffic", [])):
        changes.append(Change("traffic", live_traffic, body.get("traffic", [])))
    return changes
