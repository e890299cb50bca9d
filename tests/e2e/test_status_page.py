"""The `tfms up` status page in a real headless Chromium, over real model servers and real requests.

`tfms up` serves half_plus_two; the test then moves it through two canary steps the way the
rollout engine does (a new revision, the split and the `tfms.dev/rollout` state in one update
each, the analysis figures read from the emulator's own metrics), predicts through the
service URL, and checks what the page draws: the service, both revisions with their
percentages, a live request rate, and the rollout chart's points.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import grpc
import pytest
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from tests.conftest import REPO
from tests.e2e.chromium import open_page
from tests.e2e.upproc import UpProcess

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "manifests" / "examples" / "half-plus-two.yaml"
SERVICE = "projects/example-project/locations/us-central1/services/half-plus-two"
CANARY = "half-plus-two-canary"
BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@pytest.fixture(scope="module")
def up() -> Iterator[UpProcess]:
    proc = UpProcess(str(EXAMPLE), "--port", "0")
    try:
        proc.wait_for(r"tfms up: serving", timeout=300)
        yield proc
    finally:
        proc.kill()


def predict(url: str, count: int) -> None:
    body = json.dumps({"instances": [1.0]}).encode()
    for _ in range(count):
        request = urllib.request.Request(f"{url}/v1/models/half_plus_two:predict", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


def canary_step(services: run_v2.ServicesClient, stable: str, step: int, weight: int,
                analysis: dict[str, Any]) -> None:
    """One rollout write: traffic and rollout state in the same UpdateService, as plan/rollout.py does."""
    live = services.get_service(name=SERVICE)
    if live.template.revision != CANARY:
        live.template.revision = CANARY
        live.template.containers[0].env.append(run_v2.EnvVar(name="TFMS_CANARY", value="1"))
    live.traffic = [run_v2.TrafficTarget(type_=BY_REVISION, revision=stable, percent=100 - weight, tag="stable"),
                    run_v2.TrafficTarget(type_=BY_REVISION, revision=CANARY, percent=weight, tag="canary")]
    live.annotations["tfms.dev/rollout"] = json.dumps({
        "revision": CANARY, "stable": stable, "phase": "Progressing", "step": step, "weight": weight,
        "step_started": 0.0, "failures": 0, "message": f"step {step + 1}: {weight}%", "analysis": analysis,
    })
    services.update_service(service=live).result(timeout=240)


def canary_figures(control: str) -> dict[str, Any]:
    """The analysis figures, from the emulator's metrics as the rollout engine reads them."""
    query = urllib.parse.urlencode({"service": SERVICE, "revision": f"{SERVICE}/revisions/{CANARY}"})
    with urllib.request.urlopen(f"{control}/_emulator/metrics?{query}", timeout=10) as response:
        stats = json.loads(response.read())
    assert stats["requests"] > 0, stats
    return {"requests": stats["requests"], "errorRate": stats["errors"] / stats["requests"], "p99Ms": stats["p99_ms"]}


class Dom(HTMLParser):
    """The elements of the rendered page as (tag, attributes, text) in document order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in ("meta", "link", "br", "input", "img"):
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self.elements[self._open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for index in self._open:
            self.elements[index][2].append(data)

    def find(self, tag: str, cls: str = "", **attrs: str) -> list[tuple[dict[str, str], str]]:
        return [(a, "".join(text)) for t, a, text in self.elements
                if t == tag and (not cls or cls in a.get("class", "").split())
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def test_status_page_shows_revisions_traffic_live_rate_and_the_rollout(up: UpProcess) -> None:
    status_url = up.wait_for(r"^status page: (http://127\.0\.0\.1:\d+/_emulator/ui/)", timeout=1).group(1)
    control = status_url.removesuffix("/_emulator/ui/")
    service_url = up.wait_for(r"^half-plus-two: (http://\S+)", timeout=1).group(1)
    stable = up.wait_for(r"^half-plus-two\s+http\S+\s+True\s+(\S+)", timeout=1).group(1)
    address = up.wait_for(r"Cloud Run emulator: (\S+)", timeout=1).group(1)

    channel = grpc.insecure_channel(address)
    try:
        services = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
        canary_step(services, stable, 0, 10, {})
        predict(service_url, 50)
        canary_step(services, stable, 1, 20, canary_figures(control))
    finally:
        channel.close()
    predict(service_url, 100)

    async def rendered() -> str:
        async with open_page(status_url) as page:
            await page.wait_for(
                "document.querySelectorAll('section.service tr.revision').length === 2"
                " && [...document.querySelectorAll('td.rate')].some((td) => Number(td.dataset.value) > 0)"
                " && document.querySelector('svg.rollout-chart circle.point')", timeout=60)
            return await page.html()

    dom = Dom(asyncio.run(rendered()))
    assert dom.find("section", "service", data_service="half-plus-two")
    rows = {a["data-revision"]: (a["data-percent"], text) for a, text in dom.find("tr", "revision")}
    assert {r: p for r, (p, _) in rows.items()} == {stable: "80", CANARY: "20"}
    assert sorted(text for _, text in dom.find("td", "percent")) == ["20%", "80%"]
    rates = [float(a["data-value"]) for a, _ in dom.find("td", "rate")]
    assert len(rates) == 2 and all(rate > 0 for rate in rates), rates
    assert all(re.fullmatch(r"[\d.]+ ms", text) for _, text in dom.find("td", "p99")), dom.find("td", "p99")

    charts = dom.find("svg", "rollout-chart")
    assert len(charts) == 1 and int(charts[0][0]["data-points"]) >= 2
    weights = [a["data-y"] for a, _ in dom.find("circle", "point", data_series="canary weight (%)")]
    assert weights == ["10", "20"]
    (rollout, heading), = dom.find("div", "rollout", data_revision=CANARY)
    assert rollout["data-phase"] == "Progressing" and f"stable {stable}" in heading
    analysis = dom.find("svg", "analysis-chart")
    assert analysis and any(int(a["data-points"]) >= 1 for a, _ in analysis)
