"""Status built from one pass: what Cloud Run said now wins; what we knew is kept only when it said nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tfms.plan.convergence import convergence
from tfms.plan.status import Observation, build_status

NOW = "2026-12-04T00:00:00Z"
PREVIOUS: dict[str, Any] = {
    "service": "projects/p/locations/r/services/s", "url": "https://old", "latestReadyRevision": "s-old",
    "latestCreatedRevision": "s-old", "traffic": [],
}
LIVE: dict[str, Any] = {
    "name": "projects/p/locations/r/services/s", "uri": "https://s-new", "generation": 2, "observedGeneration": 2,
    "latestCreatedRevision": "projects/p/locations/r/services/s/revisions/s-new",
    "latestReadyRevision": "projects/p/locations/r/services/s/revisions/s-new",
    "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "stable"}],
    "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "stable",
                         "uri": "https://stable---s-new"}],
}


@pytest.mark.parametrize(
    ("observation", "url", "traffic"),
    [
        # A pass that read Cloud Run reports what it read, even when the previous status said otherwise.
        (Observation(1, "s-new", live=LIVE, convergence=convergence(LIVE, "s-new")), "https://s-new",
         [{"revision": "s-new", "percent": 100, "latestRevision": True, "tag": "stable",
           "url": "https://stable---s-new"}]),
        # A pass that could not read Cloud Run keeps what was known.
        (Observation(1, "s-new", error_reason="CloudRunUnavailable", error_message="x"), "https://old", []),
        # An invalid spec says nothing about Cloud Run.
        (Observation(1, invalid=("spec.x: bad",)), None, None),
    ],
    ids=["live-wins", "unreachable-keeps", "invalid"],
)
def test_live_values_replace_previous_ones(observation: Observation, url: str | None,
                                           traffic: list[dict[str, Any]] | None) -> None:
    status = build_status(observation, PREVIOUS, now=NOW)
    assert status.get("url") == url
    assert status.get("traffic") == traffic
