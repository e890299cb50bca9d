"""`python -m tfms.runtime` as a process, serving the committed half_plus_two model."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from tests.runtime.conftest import HALF_PLUS_TWO, Client, RuntimeProcess, free_port, port_open, start_runtime

pytestmark = pytest.mark.slow

PREDICT_BODY = '{"instances": [1.0, 2.0, 5.0]}'


def test_status_of_both_versions_under_specific_policy(served: Client) -> None:
    status, doc = served.get("/v1/models/half_plus_two")
    assert status == 200
    assert doc == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}


def test_version_and_label_status_routes(served: Client) -> None:
    assert served.get("/v1/models/half_plus_two/versions/1")[1]["model_version_status"][0]["version"] == "1"
    assert served.get("/v1/models/half_plus_two/labels/canary")[1]["model_version_status"][0]["version"] == "2"


def test_predict_rows_latest_version_and_label(served: Client) -> None:
    assert served.post("/v1/models/half_plus_two:predict", PREDICT_BODY) == (200, {"predictions": [3.5, 4.0, 5.5]})
    assert served.post("/v1/models/half_plus_two/versions/1:predict", PREDICT_BODY) == (
        200, {"predictions": [2.5, 3.0, 4.5]})
    assert served.post("/v1/models/half_plus_two/labels/stable:predict", PREDICT_BODY) == (
        200, {"predictions": [2.5, 3.0, 4.5]})
    assert served.post("/v1/models/half_plus_two/labels/canary:predict", PREDICT_BODY) == (
        200, {"predictions": [3.5, 4.0, 5.5]})


def test_predict_columnar_and_float_formatting(served: Client) -> None:
    status, headers, body = served.request(
        "POST", "/v1/models/half_plus_two/versions/1:predict", '{"inputs": [0.2, -4, 1e7, NaN]}')
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert body == b'{"outputs":[2.1,0.0,5000002.0,NaN]}'


def test_metadata_json_shape(served: Client) -> None:
    status, headers, raw = served.request("GET", "/v1/models/half_plus_two/versions/1/metadata")
    assert status == 200
    assert headers["content-type"] == "application/json"
    doc = json.loads(raw)
    assert doc["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == {"serving_default", "__saved_model_init_op"}
    serving = sigs["serving_default"]
    assert serving["method_name"] == "tensorflow/serving/predict"
    assert serving["inputs"] == {"x": {"dtype": "DT_FLOAT",
                                       "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
                                       "name": "serving_default_x:0"}}
    assert list(serving["outputs"]) == ["y"]
    assert serving["outputs"]["y"]["dtype"] == "DT_FLOAT"
    assert sigs["__saved_model_init_op"]["outputs"]["__saved_model_init_op"]["dtype"] == "DT_INVALID"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/v1/models/half:predict", PREDICT_BODY, 404, "Servable not found for request: Latest(half)"),
        ("POST", "/v1/models/half_plus_two/versions/9:predict", PREDICT_BODY, 404,
         "Servable not found for request: Specific(half_plus_two, 9)"),
        ("POST", "/v1/models/half_plus_two/labels/beta:predict", PREDICT_BODY, 400,
         "Unrecognized servable version label: beta"),
        ("GET", "/v1/models/half_plus_two:predict", None, 400,
         "Malformed request: GET /v1/models/half_plus_two:predict"),
        ("GET", "/v1/models/half_plus_two/versions/abc", None, 400,
         "Malformed request: GET /v1/models/half_plus_two/versions/abc"),
        ("POST", "/v1/models/half_plus_two:predict", "", 400, "JSON Parse error: The document is empty"),
        ("POST", "/v1/models/half_plus_two:predict", "{oops}", 400, "JSON Parse error: "),
        ("POST", "/v1/models/half_plus_two:predict", '{"instances": [1], "inputs": [1]}', 400,
         "expecting only one of 'inputs' or 'instances' keys to exist"),
        ("POST", "/v1/models/half_plus_two:predict", "{}", 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/half_plus_two:predict", '{"instances": []}', 400, "No values in 'instances' array"),
        ("POST", "/v1/models/half_plus_two:predict", '{"signature_name": 1, "instances": [1]}', 400,
         "'signature_name' key must be a string value."),
        ("POST", "/v1/models/half_plus_two:predict", '{"signature_name": "x", "instances": [1]}', 400,
         'Serving signature name: "x" not found in signature def'),
        ("POST", "/v1/models/half_plus_two:predict", '{"instances": [[1.0, 2.0]]}', 400, "Cannot feed value of shape"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ],
)
def test_error_messages_and_codes(served: Client, method: str, path: str, body: str | None, status: int,
                                  message: str) -> None:
    got, headers, raw = served.request(method, path, body)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert message in json.loads(raw)["error"]


def test_case_insensitive_urls(served: Client) -> None:
    assert served.post("/V1/MODELS/half_plus_two/Versions/1:predict", PREDICT_BODY) == (
        200, {"predictions": [2.5, 3.0, 4.5]})


@pytest.mark.parametrize("path", ["/", "/healthz", "/v2/models/half_plus_two"])
def test_non_api_paths_are_plain_404(served: Client, path: str) -> None:
    status, headers, body = served.request("GET", path)
    assert status == 404
    assert headers["content-type"] == "text/html"
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_keep_alive_and_chunked_bodies(served: Client) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        part1, part2 = b'{"ins', b'tances": [1.0, 2.0, 5.0]}'
        chunked = (b"POST /v1/models/half_plus_two/versions/1:predict HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(part1), part1, len(part2), part2))
        plain = (b"GET /v1/models/half_plus_two/versions/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.sendall(chunked + plain)  # pipelined: answered in order on one connection
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    first, second = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK")
    assert first.endswith(b'{"predictions":[2.5,3.0,4.5]}')
    assert second.startswith(b"200 OK")
    assert b'"version": "2"' in second


# ---- process behaviour ---------------------------------------------------------------


def test_default_model_name_port_map_and_sigterm(tmp_path: Path) -> None:
    """Told `--rest_api_port=8080` like a Cloud Run container; the map moves it to a free port."""
    port = free_port()
    proc = start_runtime(["--rest_api_port=8080", f"--model_base_path={HALF_PLUS_TWO}"], tmp_path, port,
                         env={"TFMS_RUNTIME_PORT_MAP": f"8080:{port},8500:0"})
    client = Client(port)
    status, doc = client.get("/v1/models/default")
    assert status == 200
    assert [s["version"] for s in doc["model_version_status"]] == ["2"]  # latest only by default
    assert client.post("/v1/models/default:predict", PREDICT_BODY) == (200, {"predictions": [3.5, 4.0, 5.5]})
    assert "gRPC is not served" in proc.log()
    assert proc.stop(signal.SIGTERM) == 0
    assert not port_open(port)


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = start_runtime([f"--rest_api_port={port}", f"--model_base_path={HALF_PLUS_TWO}", "--enable_batching"],
                         tmp_path, port)
    assert "--enable_batching=True is accepted but not emulated" in proc.log()
    assert proc.stop(signal.SIGINT) == 0


def test_rest_port_equal_to_grpc_port_skips_rest(tmp_path: Path) -> None:
    port = free_port()
    proc = RuntimeProcess([f"--port={port}", f"--rest_api_port={port}", f"--model_base_path={HALF_PLUS_TWO}"],
                          tmp_path / "same.log")
    proc.wait_for_log("Skipped setting up HTTP/REST API server.")
    proc.wait_for_log("Successfully loaded servable version {name: default version: 2}")
    assert proc.proc.poll() is None  # like TF Serving: logs an error, keeps running
    assert not port_open(port)
    assert proc.stop() == 0


def test_sigterm_while_loading_exits_cleanly(tmp_path: Path) -> None:
    proc = RuntimeProcess(["--rest_api_port=0", f"--model_base_path={tmp_path / 'not-yet'}"], tmp_path / "wait.log")
    proc.wait_for_log("Could not find base path")  # TF Serving keeps waiting for the model to appear
    assert proc.proc.poll() is None
    assert proc.stop() == 0


def test_failed_load_exits_nonzero_with_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    port = free_port()
    proc = RuntimeProcess([f"--rest_api_port={port}", f"--model_base_path={broken.parent}", "--model_name=b"],
                          tmp_path / "broken.log")
    assert proc.wait_exit() == 255
    log = proc.log()
    assert "Failed to start server. Error: Loading servable: {name: b version: 1} failed" in log
    assert not port_open(port)


def test_missing_model_config_file_exits_nonzero(tmp_path: Path) -> None:
    proc = RuntimeProcess(["--rest_api_port=0", f"--model_config_file={tmp_path / 'nope.config'}"],
                          tmp_path / "nocfg.log")
    assert proc.wait_exit() == 255
    assert "Failed to start server. Error: Could not read model config file" in proc.log()
