"""The control interface over HTTP (`/_emulator/...`), as an out-of-process test or a `tfms up` user drives it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions

from tests.emulator.emulator_testkit import Api, connect, finish, template
from tfms.emulator import Emulator, EmulatorConfig
from tfms.emulator.cli_options import EMULATOR_EPILOG, ENDPOINTS


@pytest.fixture
def rest_api() -> Iterator[Api]:
    emulator = Emulator(EmulatorConfig(seed=7))
    emulator.start(rest_port=0)
    try:
        with connect(emulator, "rest") as api:
            yield api
    finally:
        emulator.stop()


def control(api: Api, verb: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api.emulator.rest_url}/_emulator{path}", data=data, method=verb)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_index_lists_every_endpoint_and_the_help_matches(rest_api: Api) -> None:
    status, index = control(rest_api, "GET", "")
    assert status == 200
    assert [(e["verb"], e["path"]) for e in index["endpoints"]] == [(v, f"/_emulator{p}") for v, p, _, _ in ENDPOINTS]
    assert "GetService" in index["methods"] and "fail-next" in index["help"]
    for verb, path, _, _ in ENDPOINTS:
        assert f"{verb} /_emulator{path}" in EMULATOR_EPILOG


def test_fail_next_and_calls(rest_api: Api) -> None:
    rest_api.create_ready("svc")
    status, echo = control(rest_api, "POST", "/fail-next", {"method": "GetService", "code": "unavailable", "count": 2})
    assert status == 200 and echo == {"method": "GetService", "code": "UNAVAILABLE", "count": 2,
                                      "message": "Injected fault."}
    for _ in range(2):
        with rest_api.raises("UNAVAILABLE"):
            rest_api.services.get_service(name=rest_api.name("svc"), retry=None)
    assert rest_api.get("svc").name == rest_api.name("svc")
    _, calls = control(rest_api, "GET", "/calls?method=GetService")
    assert [c["transport"] for c in calls["calls"]] == ["rest"] * 3
    assert calls["calls"][0]["request"] == {"name": rest_api.name("svc")}
    assert control(rest_api, "DELETE", "/calls")[0] == 200
    assert control(rest_api, "GET", "/calls")[1] == {"calls": []}


@pytest.mark.parametrize(
    ("path", "body", "text"),
    [
        ("/fail-next", {"method": "GetServce", "code": "UNAVAILABLE"}, "unknown RPC"),
        ("/fail-next", {"method": "GetService", "code": "NOPE"}, "status code"),
        ("/fail-next", {"method": "GetService", "code": "OK"}, "status code"),
        ("/fail-next", {"method": "GetService", "count": 0}, "count"),
        ("/delay", {"method": "GetService", "seconds": -1}, "seconds"),
        ("/fail-next-revision", {"reason": "BROKEN"}, "reason"),
        ("/operation-polls", {"polls": "many"}, "polls"),
        ("/fail-image", {}, "image"),
    ],
)
def test_bad_control_requests_are_refused(rest_api: Api, path: str, body: dict[str, Any], text: str) -> None:
    status, error = control(rest_api, "POST", path, body)
    assert status == 400 and error["error"]["status"] == "INVALID_ARGUMENT" and text in error["error"]["message"]


def test_failing_revisions_and_operations(rest_api: Api) -> None:
    control(rest_api, "POST", "/fail-next-revision", {"reason": "HEALTH_CHECK_CONTAINER_ERROR", "message": "No port."})
    with pytest.raises(exceptions.FailedPrecondition) as err:
        rest_api.create_ready("one")
    assert err.value.message.endswith("No port.")
    control(rest_api, "POST", "/fail-image", {"image": "bad:1"})
    with pytest.raises(exceptions.FailedPrecondition):
        rest_api.create_ready("two", template("bad:1"))
    control(rest_api, "POST", "/clear-image-failure", {"image": "bad:1"})
    rest_api.create_ready("three", template("bad:1"))
    control(rest_api, "POST", "/fail-next-operation", {"code": "RESOURCE_EXHAUSTED", "message": "Out of quota."})
    with pytest.raises(exceptions.ResourceExhausted):
        rest_api.create_ready("four")


def test_operation_polls_delay_and_reset(rest_api: Api) -> None:
    control(rest_api, "POST", "/operation-polls", {"polls": 2})
    control(rest_api, "POST", "/delay", {"method": "GetOperation", "seconds": 0.01})
    op = rest_api.create("svc")
    control(rest_api, "DELETE", "/calls")
    finish(op)
    _, calls = control(rest_api, "GET", "/calls?method=GetOperation")
    assert len(calls["calls"]) == 3
    control(rest_api, "POST", "/reset")
    assert rest_api.emulator.control.polls == 0
    assert rest_api.emulator.control.calls == []


def test_state_document(rest_api: Api) -> None:
    svc = rest_api.create_ready("svc")
    _, state = control(rest_api, "GET", "/state")
    assert state["services"][svc.name]["generation"] == "1"
    assert list(state["revisions"]) == [svc.latest_created_revision]
