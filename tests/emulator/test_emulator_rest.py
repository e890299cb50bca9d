"""The REST surface on the wire: bindings, proto3 JSON and Google's error envelope (raw HTTP).

The real REST client is exercised by the conformance suite; these tests pin what it cannot see.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud.run_v2.services.revisions.transports.rest_base import _BaseRevisionsRestTransport
from google.cloud.run_v2.services.services.transports.rest_base import _BaseServicesRestTransport

from tests.emulator.emulator_testkit import PARENT, Api, connect, template
from tfms.emulator import Emulator, EmulatorConfig
from tfms.emulator.rest import BINDINGS


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = Emulator(EmulatorConfig(seed=7))
    emulator.start(rest_port=0)
    yield emulator
    emulator.stop()


def http(emu: Emulator, verb: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(emu.rest_url + path, data=data, method=verb)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_bindings_are_the_installed_clients() -> None:
    """The route table equals the `google.api.http` options of the installed gapic transports."""
    installed = set()
    for base in (_BaseServicesRestTransport, _BaseRevisionsRestTransport):
        for name in dir(base):
            if name.startswith("_Base") and hasattr(getattr(base, name), "_get_http_options"):
                for option in getattr(base, name)._get_http_options():
                    if "workerPools" not in option["uri"]:  # worker pools are not emulated
                        installed.add((option["method"].upper(), option["uri"], option.get("body", "")))
    assert {(verb, uri, body) for verb, uri, body, _ in BINDINGS} == installed


def test_json_is_proto3_json(emu: Emulator) -> None:
    body = {"template": {"containers": [{"image": "tensorflow/serving:2.19.0"}]}, "labels": {"team": "ml"}}
    status, op = http(emu, "POST", f"/v2/{PARENT}/services?serviceId=svc", body)
    assert status == 200 and op["name"].startswith(f"{PARENT}/operations/")
    assert "done" not in op  # false is a default, so proto3 JSON omits it
    assert op["metadata"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Service"
    assert emu.wait_until(lambda s: not s.services[f"{PARENT}/services/svc"].reconciling)
    status, svc = http(emu, "GET", f"/v2/{PARENT}/services/svc")
    assert status == 200
    assert svc["generation"] == "1" and svc["observedGeneration"] == "1"  # int64 is a string in JSON
    assert svc["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"  # enum names by default
    assert svc["template"]["maxInstanceRequestConcurrency"] == 80  # camelCase, int32 a number
    _, numeric = http(emu, "GET", f"/v2/{PARENT}/services/svc?%24alt=json%3Benum-encoding%3Dint")
    assert numeric["terminalCondition"]["state"] == 4  # what the gapic transports ask for


def test_errors_use_googles_envelope(emu: Emulator) -> None:
    status, error = http(emu, "POST", f"/v2/{PARENT}/services?serviceId=Bad", {"template": {}})
    assert status == 400
    assert error["error"]["code"] == 400 and error["error"]["status"] == "INVALID_ARGUMENT"
    (details,) = error["error"]["details"]
    assert details["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert {v["field"] for v in details["fieldViolations"]} == {"service_id", "service.template.containers"}
    status, error = http(emu, "GET", f"/v2/{PARENT}/services/nope")
    assert (status, error["error"]["status"]) == (404, "NOT_FOUND")
    status, error = http(emu, "GET", "/v2/projects/p/somewhere/else")
    assert (status, error["error"]["status"]) == (404, "NOT_FOUND")
    status, error = http(emu, "PUT", f"/v2/{PARENT}/services/svc", {})
    assert status == 404


@pytest.mark.parametrize(
    ("path", "body", "text"),
    [
        (f"/v2/{PARENT}/services?serviceId=svc&color=blue", {}, 'Unknown name "color"'),
        (f"/v2/{PARENT}/services?serviceId=svc&validateOnly=yes", {}, "validateOnly"),
        (f"/v2/{PARENT}/services?serviceId=svc", {"templat": {}}, "templat"),
        (f"/v2/{PARENT}/services?serviceId=svc", b"{not json", "Invalid JSON payload"),
    ],
    ids=["unknown parameter", "bad bool", "unknown field", "not JSON"],
)
def test_bad_payloads_are_refused_like_google(emu: Emulator, path: str, body: Any, text: str) -> None:
    status, error = http(emu, "POST", path, body)
    assert status == 400 and error["error"]["status"] == "INVALID_ARGUMENT"
    assert text in error["error"]["message"]
    assert emu.state.services == {}


def test_query_parameters_bind_nested_and_repeated_fields(emu: Emulator) -> None:
    body = {"template": {"containers": [{"image": "a:1"}]}}
    http(emu, "POST", f"/v2/{PARENT}/services?serviceId=svc&validateOnly=true", body)
    assert emu.state.services == {}
    status, _ = http(emu, "GET", f"/v2/{PARENT}/services?pageSize=2&showDeleted=false")
    assert status == 200
    status, _ = http(emu, "GET", f"/v2/{PARENT}/services/x:getIamPolicy?options.requestedPolicyVersion=3")
    assert status == 404  # bound (and parsed); the service does not exist


def test_one_state_behind_both_transports(emu: Emulator) -> None:
    with connect(emu, "grpc") as grpc_api, connect(emu, "rest") as rest_api:
        created = grpc_api.create_ready("svc", template(revision="svc-v1"))
        assert rest_api.get("svc") == created
        created.labels["via"] = "rest"
        updated = rest_api.update_ready(created)
        assert grpc_api.get("svc") == updated
    transports = {(c.method, c.transport) for c in emu.control.calls}
    assert {("CreateService", "grpc"), ("GetService", "rest"), ("UpdateService", "rest")} <= transports
    rest_headers = dict(emu.control.call_metadata[[c.transport for c in emu.control.calls].index("rest")])
    assert "x-goog-api-client" in rest_headers


def test_rest_is_optional(api: Api) -> None:
    with pytest.raises(RuntimeError, match="REST transport not started"):
        _ = api.emulator.rest_url
