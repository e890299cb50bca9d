"""RestApi + ModelManager with a fake (numpy) loader: routing, status, labels, errors.

Same code path as the HTTP server minus the socket, without tensorflow, so the whole
error table of the reference is checked in milliseconds.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfms.runtime import dtypes as dt
from tfms.runtime.config import ModelConfig, VersionPolicy
from tfms.runtime.models import LoadError, ModelManager
from tfms.runtime.rest import RestApi
from tfms.runtime.signature import Signature, TensorInfo

VEC = ((-1, ""),)


class FakeServable:
    """y = 0.5 * x + version + 1, like the real half_plus_two versions."""

    def __init__(self, path: str) -> None:
        self.offset = float(Path(path).name) + 1
        self.closed = False
        self.signatures = {
            "serving_default": Signature(
                inputs={"x": TensorInfo("serving_default_x:0", dt.DT_FLOAT, VEC)},
                outputs={"y": TensorInfo("StatefulPartitionedCall:0", dt.DT_FLOAT, VEC)},
                method_name="tensorflow/serving/predict",
            ),
            "__saved_model_init_op": Signature(
                inputs={}, outputs={"__saved_model_init_op": TensorInfo("NoOp", dt.DT_INVALID, (), True)}
            ),
        }

    def run(self, sig_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": (inputs["x"] * 0.5 + self.offset).astype(np.float32)}

    def close(self) -> None:
        self.closed = True


def model_dir(tmp_path: Path, *versions: str) -> Path:
    base = tmp_path / "hpt"
    for v in versions:
        (base / v).mkdir(parents=True, exist_ok=True)
    return base


@pytest.fixture
def api(tmp_path: Path) -> RestApi:
    base = model_dir(tmp_path, "1", "2")
    manager = ModelManager(FakeServable)
    manager.load([ModelConfig("half_plus_two", str(base), policy=VersionPolicy("specific", versions=(1, 2)),
                              labels={"stable": 1, "canary": 2})])
    return RestApi(manager)


def call(api: RestApi, method: str, path: str, body: bytes | str = b"") -> tuple[int, Any]:
    reply = api.handle(method, path, body.encode() if isinstance(body, str) else body)
    assert reply.content_type == "application/json"
    return reply.status, json.loads(reply.body)


def test_status_lists_all_versions_newest_first(api: RestApi) -> None:
    status, doc = call(api, "GET", "/v1/models/half_plus_two")
    assert status == 200
    assert doc == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}


@pytest.mark.parametrize(("path", "version"), [("/v1/models/half_plus_two/versions/1", "1"),
                                               ("/v1/models/half_plus_two/labels/canary", "2")])
def test_status_of_one_version(api: RestApi, path: str, version: str) -> None:
    status, doc = call(api, "GET", path)
    assert status == 200
    assert [s["version"] for s in doc["model_version_status"]] == [version]


def test_predict_latest_version_label_and_columnar(api: RestApi) -> None:
    body = '{"instances": [1.0, 2.0, 5.0]}'
    assert call(api, "POST", "/v1/models/half_plus_two:predict", body) == (200, {"predictions": [3.5, 4.0, 5.5]})
    assert call(api, "POST", "/v1/models/half_plus_two/versions/1:predict", body) == (
        200, {"predictions": [2.5, 3.0, 4.5]})
    assert call(api, "POST", "/v1/models/half_plus_two/labels/stable:predict", body) == (
        200, {"predictions": [2.5, 3.0, 4.5]})
    assert call(api, "POST", "/v1/models/half_plus_two:predict", '{"inputs": [1.0]}') == (200, {"outputs": [3.5]})


def test_url_matching_is_case_insensitive_and_names_are_unescaped(tmp_path: Path) -> None:
    base = model_dir(tmp_path, "1")
    manager = ModelManager(FakeServable)
    manager.load([ModelConfig("my model", str(base))])
    api = RestApi(manager)
    status, doc = call(api, "POST", "/V1/Models/my%20model/VERSIONS/1:predict", '{"instances": [0.0]}')
    assert (status, doc) == (200, {"predictions": [2.0]})
    assert call(api, "GET", "/v1/MODELS/my%20model")[0] == 200


def test_metadata_shape(api: RestApi) -> None:
    reply = api.handle("GET", "/v1/models/half_plus_two/versions/1/metadata", b"")
    assert reply.status == 200
    doc = json.loads(reply.body)
    assert doc["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert sigs["serving_default"] == {
        "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                                                               "unknown_rank": False},
                         "name": "serving_default_x:0"}},
        "outputs": {"y": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                                                                "unknown_rank": False},
                          "name": "StatefulPartitionedCall:0"}},
        "method_name": "tensorflow/serving/predict",
        "defaults": {},
    }
    assert sigs["__saved_model_init_op"]["outputs"]["__saved_model_init_op"] == {
        "dtype": "DT_INVALID", "tensor_shape": {"dim": [], "unknown_rank": True}, "name": "NoOp"}
    latest = json.loads(api.handle("GET", "/v1/models/half_plus_two/metadata", b"").body)
    assert latest["model_spec"]["version"] == "2"
    by_label = json.loads(api.handle("GET", "/v1/models/half_plus_two/labels/stable/metadata", b"").body)
    assert by_label["model_spec"]["version"] == "1"


PREDICT = "/v1/models/half_plus_two:predict"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/v1/models/half:predict", '{"instances": [1]}', 404, "Servable not found for request: Latest(half)"),
        ("POST", "/v1/models/half_plus_two/versions/9:predict", '{"instances": [1]}', 404,
         "Servable not found for request: Specific(half_plus_two, 9)"),
        ("POST", "/v1/models/half_plus_two/labels/nope:predict", '{"instances": [1]}', 400,
         "Unrecognized servable version label: nope"),
        ("GET", "/v1/models/half_plus_two/labels/nope", "", 400, "Unrecognized servable version label: nope"),
        ("GET", "/v1/models/half_plus_two/versions/9/metadata", "", 404,
         "Servable not found for request: Specific(half_plus_two, 9)"),
        ("GET", "/v1/models/half/metadata", "", 404, "Servable not found for request: Latest(half)"),
        ("GET", "/v1/models/half", "", 404, "Could not find any versions of model half"),
        ("GET", "/v1/models/half_plus_two/versions/9", "", 404, "Could not find version 9 of model half_plus_two"),
        ("GET", "/v1/models", "", 400, "Missing model name in request."),
        ("GET", PREDICT, "", 400, f"Malformed request: GET {PREDICT}"),
        ("POST", "/v1/foo", "{}", 400, "Malformed request: POST /v1/foo"),
        ("GET", "/v1/models/half_plus_two/versions/abc", "", 400,
         "Malformed request: GET /v1/models/half_plus_two/versions/abc"),
        ("POST", "/v1/models/half_plus_two/versions/1/labels/stable:predict", "{}", 400, "Malformed request: POST"),
        ("PUT", PREDICT, "{}", 400, f"Malformed request: PUT {PREDICT}"),
        ("POST", PREDICT, "", 400, "JSON Parse error: The document is empty"),
        ("POST", PREDICT, "{bad", 400, "JSON Parse error: Missing a name for object member. at offset: 1"),
        ("POST", PREDICT, "[1]", 400, "Is not object"),
        ("POST", PREDICT, '{"instances": [1], "inputs": [1]}', 400,
         "expecting only one of 'inputs' or 'instances' keys to exist"),
        ("POST", PREDICT, '{"signature_name": "serving_default"}', 400, "Missing 'inputs' or 'instances' key"),
        ("POST", PREDICT, '{"instances": []}', 400, "No values in 'instances' array"),
        ("POST", PREDICT, '{"signature_name": 100, "instances": [1]}', 400,
         "'signature_name' key must be a string value."),
        ("POST", PREDICT, '{"signature_name": "x", "instances": [1]}', 400,
         'Serving signature name: "x" not found in signature def'),
        ("POST", PREDICT, '{"signature_name": "__saved_model_init_op", "instances": [1]}', 400,
         "Failed to get input map for signature: __saved_model_init_op"),
        ("POST", PREDICT, '{"instances": ["a"]}', 400, "is not of expected type: float"),
    ],
)
def test_error_table(api: RestApi, method: str, path: str, body: str, status: int, message: str) -> None:
    got_status, doc = call(api, method, path, body)
    assert got_status == status
    assert list(doc) == ["error"]
    assert message in doc["error"]


def test_error_body_layout(api: RestApi) -> None:
    reply = api.handle("POST", "/v1/models/half:predict", b'{"instances": [1]}')
    assert reply.body == b'{ "error": "Servable not found for request: Latest(half)" }'


def test_parse_error_precedes_model_lookup(api: RestApi) -> None:
    assert call(api, "POST", "/v1/models/unknown:predict", "")[1]["error"] == "JSON Parse error: The document is empty"


@pytest.mark.parametrize("path", ["/", "/healthz", "/v2/models/half_plus_two", "/v1"])
def test_paths_outside_v1_get_a_plain_404(api: RestApi, path: str) -> None:
    reply = api.handle("GET", path, b"")
    assert reply.status == 404
    assert reply.content_type == "text/html"
    assert b"404 Not Found" in reply.body


def test_verb_is_compared_case_sensitively_like_upstream(api: RestApi) -> None:
    status, doc = call(api, "POST", "/v1/models/half_plus_two:PREDICT", '{"instances": [1]}')
    assert status == 400
    assert doc["error"].startswith("Malformed request")


def test_cors_headers_only_when_enabled(tmp_path: Path) -> None:
    manager = ModelManager(FakeServable)
    manager.load([ModelConfig("m", str(model_dir(tmp_path, "1")))])
    assert RestApi(manager).handle("GET", "/v1/models/m", b"").headers == {}
    cors = RestApi(manager, cors=True)
    assert cors.handle("GET", "/v1/models/m", b"").headers["Access-Control-Allow-Origin"] == "*"
    assert cors.handle("OPTIONS", "/v1/models/m", b"", origin="https://x.example").status == 200


def test_in_process_predict_api(api: RestApi) -> None:
    manager = api.manager
    assert manager.predict(b'{"instances": [1.0, 2.0, 5.0]}', "half_plus_two", version=1) == (
        200, b'{"predictions":[2.5,3.0,4.5]}')
    status, body = manager.predict(b'{"instances": [1.0]}', "nope")
    assert status == 404
    assert json.loads(body) == {"error": "Servable not found for request: Latest(nope)"}


# ---- loading and polling ---------------------------------------------------------------


def test_default_policy_serves_only_the_latest_version(tmp_path: Path) -> None:
    manager = ModelManager(FakeServable)
    manager.load([ModelConfig("m", str(model_dir(tmp_path, "1", "0002", "junk")))])
    doc = json.loads(manager.status("m"))
    assert [s["version"] for s in doc["model_version_status"]] == ["2"]


def test_label_on_an_unloaded_version_fails_startup(tmp_path: Path) -> None:
    manager = ModelManager(FakeServable)
    with pytest.raises(LoadError, match="assign label to version 1 of model m, which is not currently available"):
        manager.load([ModelConfig("m", str(model_dir(tmp_path, "1", "2")), labels={"stable": 1})])
    allowed = ModelManager(FakeServable, allow_labels_for_unavailable=True)
    allowed.load([ModelConfig("m", str(model_dir(tmp_path, "1", "2")), labels={"stable": 1})])
    assert allowed.resolve_label("m", "stable") == 1


def test_failed_load_raises(tmp_path: Path) -> None:
    def broken(path: str) -> FakeServable:
        raise RuntimeError("bad graph")

    with pytest.raises(LoadError, match=r"Loading servable: \{name: m version: 1\} failed: RuntimeError: bad graph"):
        ModelManager(broken).load([ModelConfig("m", str(model_dir(tmp_path, "1")))])


def test_load_waits_for_a_version_to_appear(tmp_path: Path) -> None:
    base = tmp_path / "later"
    manager = ModelManager(FakeServable)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (manager.load([ModelConfig("m", str(base))], poll_seconds=0.05),
                                              done.set()))
    thread.start()
    assert not done.wait(0.3)  # no base path yet: still waiting, like TF Serving
    (base / "3").mkdir(parents=True)
    assert done.wait(10)
    thread.join()
    assert manager.servable("m") is not None


def test_poller_loads_new_versions_then_unloads_old(tmp_path: Path) -> None:
    base = model_dir(tmp_path, "1")
    manager = ModelManager(FakeServable)
    manager.load([ModelConfig("m", str(base))])
    old = manager.servable("m")
    (base / "2").mkdir()
    stop = threading.Event()
    thread = threading.Thread(target=manager.poll_forever, args=(0.05, stop))
    thread.start()
    try:
        deadline = threading.Event()
        for _ in range(200):
            doc = json.loads(manager.status("m"))
            if [s["state"] for s in doc["model_version_status"]] == ["AVAILABLE", "END"]:
                break
            deadline.wait(0.05)
        assert [(s["version"], s["state"]) for s in doc["model_version_status"]] == [("2", "AVAILABLE"),
                                                                                      ("1", "END")]
        assert manager.predict(b'{"instances": [0.0]}', "m") == (200, b'{"predictions":[3.0]}')
        assert manager.servable("m") is not old
    finally:
        stop.set()
        thread.join()


def test_remote_base_paths_are_rejected_up_front() -> None:
    with pytest.raises(LoadError, match="gs://bucket/m of model m is not a local directory"):
        ModelManager(FakeServable).load([ModelConfig("m", "gs://bucket/m")])
