"""What the status page stands on: `/_emulator/history` (timestamped service changes) and its files."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import run_v2

from tests.emulator.emulator_testkit import Api, connect, template, to_revision
from tfms.emulator import Emulator, EmulatorConfig
from tfms.emulator.history import ServiceHistory
from tfms.emulator.ui import ASSETS

ROLLOUT = "tfms.dev/rollout"


@pytest.fixture
def api() -> Iterator[Api]:
    emulator = Emulator(EmulatorConfig(seed=3))
    emulator.start(rest_port=0)
    try:
        with connect(emulator, "grpc") as api:
            yield api
    finally:
        emulator.stop()


def fetch(api: Api, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"{api.emulator.rest_url}{path}", timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def history(api: Api, service: str, since: float | None = None) -> tuple[int, Any]:
    query = {"service": service} if since is None else {"service": service, "since": str(since)}
    status, _, body = fetch(api, "/_emulator/history?" + urllib.parse.urlencode(query))
    return status, json.loads(body)


def test_history_records_each_traffic_and_annotation_change_with_its_time(api: Api) -> None:
    svc = api.create_ready("svc", template(revision="svc-a"))
    svc.template = template(revision="svc-b")
    svc.traffic = [to_revision("svc-a", 80, "stable"), to_revision("svc-b", 20, "canary")]
    svc.annotations[ROLLOUT] = json.dumps({"revision": "svc-b", "phase": "Progressing", "weight": 20})
    svc = api.update_ready(svc)
    svc.annotations[ROLLOUT] = json.dumps({"revision": "svc-b", "phase": "Progressing", "weight": 20,
                                           "analysis": {"requests": 40, "errorRate": 0.0, "p99Ms": 9.5}})
    api.update_ready(svc)

    status, body = history(api, api.name("svc"))
    assert status == 200 and body["service"] == api.name("svc")
    changes = body["changes"]
    times = [c["t"] for c in changes]
    assert times == sorted(times)
    served = [c for c in changes if c["traffic"]]
    assert served[0]["traffic"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "revision": "",
                                     "percent": 100, "tag": ""}]
    assert served[-1]["traffic"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "svc-a", "percent": 80, "tag": "stable"},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "svc-b", "percent": 20, "tag": "canary"},
    ]
    rollouts = [json.loads(c["annotations"][ROLLOUT]) for c in changes if ROLLOUT in c["annotations"]]
    assert rollouts[-1]["analysis"] == {"requests": 40, "errorRate": 0.0, "p99Ms": 9.5}
    assert len({json.dumps(r, sort_keys=True) for r in rollouts}) == 2
    assert changes[-1]["latestReadyRevision"] == f"{api.name('svc')}/revisions/svc-b"

    _, later = history(api, api.name("svc"), since=times[-1])
    assert later["changes"] == changes[-1:]


def test_history_ignores_calls_that_change_nothing(api: Api) -> None:
    svc = api.create_ready("svc")
    before = history(api, api.name("svc"))[1]["changes"]
    api.update_ready(svc)  # the same spec: no new generation, no new traffic
    api.get("svc")
    assert history(api, api.name("svc"))[1]["changes"] == before


def test_history_of_unknown_or_deleted_services_is_not_found(api: Api) -> None:
    api.create_ready("gone")
    api.services.delete_service(name=api.name("gone")).result(timeout=5)
    for service in (api.name("gone"), api.name("never")):
        status, body = history(api, service)
        assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    status, _, body = fetch(api, "/_emulator/history")
    assert status == 400 and b"'service'" in body
    assert history(api, api.name("never"), since=float("nan"))[0] == 400


def test_history_is_bounded_and_keeps_the_newest() -> None:
    clock = iter(range(100)).__next__
    recorder = ServiceHistory(clock=lambda: float(clock()), limit=3)
    svc = run_v2.Service(name="s")
    for generation in range(1, 6):
        svc.generation = generation
        recorder.observe({"s": svc})
    changes = recorder.changes("s")
    assert changes is not None and [c["generation"] for c in changes] == [3, 4, 5]
    assert [c["t"] for c in changes] == [2.0, 3.0, 4.0]
    assert recorder.changes("other") is None


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_status_page_files_are_served_offline(api: Api, name: str) -> None:
    status, content_type, body = fetch(api, f"/_emulator/ui/{name}")
    assert status == 200 and content_type.startswith(ASSETS[name]) and body
    assert b"https://" not in body and b"//cdn" not in body, "no CDN: the page must work offline"


def test_status_page_loads_only_its_own_files(api: Api) -> None:
    page = fetch(api, "/_emulator/ui/")[2].decode()
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(linked) == sorted(set(ASSETS) - {"index.html"})


def test_status_page_root_and_unknown_files(api: Api) -> None:
    status, content_type, body = fetch(api, "/_emulator/ui")  # redirected to the page
    assert status == 200 and content_type.startswith("text/html") and b'src="app.js"' in body
    assert fetch(api, "/_emulator/ui/secrets.txt")[0] == 404
    assert api.emulator.status_url == f"{api.emulator.rest_url}/_emulator/ui/"


def test_metrics_take_a_revision_by_short_name_as_the_console_shows_it(api: Api) -> None:
    svc = api.create_ready("svc", template(revision="svc-a"))
    by_name = {}
    for revision in (f"{svc.name}/revisions/svc-a", "svc-a"):
        query = urllib.parse.urlencode({"service": svc.name, "revision": revision, "start": "0", "end": "1"})
        status, _, body = fetch(api, "/_emulator/metrics?" + query)
        assert status == 200, body
        by_name[revision] = json.loads(body)
    assert by_name["svc-a"] == by_name[f"{svc.name}/revisions/svc-a"] and by_name["svc-a"]["requests"] == 0
    status, _, body = fetch(api, "/_emulator/metrics?" + urllib.parse.urlencode(
        {"service": svc.name, "revision": "svc-zz"}))
    assert status == 404 and b"svc/revisions/svc-zz not found" in body
