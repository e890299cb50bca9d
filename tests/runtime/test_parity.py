"""The local runtime against TF Serving's REST API, behaviour by behaviour.

Every test names the section of `shared/reference/tf-serving-rest.md` (§) or the case
(`shared/cases`) it checks. One `python -m tfms.runtime` process serves every model the
issue asks for, from one model config file, exactly as a container would be told to:
half_plus_two (versions 1 and 2, labels stable/canary), a multi-input model, a string
model, an estimator-style model with classify/regress signatures, a model that ships
warmup records, a model without `serving_default`, and basic-pitch (a third-party model).
Monitoring and batching config files are passed too, as `tfms render` writes them.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.models import basic_pitch_model_dir
from tests.runtime.conftest import HALF_PLUS_TWO, Client, free_port, start_runtime
from tests.runtime.tfmodels import zoo

pytestmark = pytest.mark.slow

METRICS_PATH = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def tfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp("parity")
    models = zoo()
    config = tmp / "models.config"
    entries = [
        f"config {{ name: 'half_plus_two' base_path: '{HALF_PLUS_TWO}' model_platform: 'tensorflow'\n"
        "  model_version_policy { specific { versions: 1 versions: 2 } }\n"
        "  version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 } }",
        *(f"config {{ name: '{name}' base_path: '{models / name}' model_platform: 'tensorflow' }}"
          for name in ("multi", "strings", "examples", "warmup", "nodefault")),
        f"config {{ name: 'basic_pitch' base_path: '{basic_pitch_model_dir()}' }}",
    ]
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    (tmp / "monitoring.config").write_text('prometheus_config {\n  enable: true\n  path: ""\n}\n')
    (tmp / "batching.config").write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 0 }\n"
                                         "allowed_batch_sizes: 4\nallowed_batch_sizes: 8\n")
    port = free_port()
    proc = start_runtime([f"--rest_api_port={port}", "--port=0", f"--model_config_file={config}",
                          f"--monitoring_config_file={tmp / 'monitoring.config'}", "--enable_batching=true",
                          f"--batching_parameters_file={tmp / 'batching.config'}"], tmp, port)
    client = Client(port)
    client.log = proc.log  # type: ignore[attr-defined]
    yield client
    assert proc.stop() == 0, proc.log()


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def post(tfs: Client, path: str, doc: Any) -> tuple[int, Any]:
    return tfs.post(path, doc)


HPT = "/v1/models/half_plus_two"
OK_STATUS = {"error_code": "OK", "error_message": ""}

# ---- §3.1 endpoints, §3.3 status -------------------------------------------------------


def test_status_of_all_versions_s31_s33(tfs: Client) -> None:
    """§3.1: without a version, the status of all versions; §3.3: int64 as strings, newest first."""
    assert tfs.get(HPT) == (200, {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": OK_STATUS},
        {"version": "1", "state": "AVAILABLE", "status": OK_STATUS}]})


@pytest.mark.parametrize(("path", "version"), [(f"{HPT}/versions/1", "1"), (f"{HPT}/labels/canary", "2"),
                                               (f"{HPT}/labels/stable", "1")])
def test_status_of_one_version_or_label_s31(tfs: Client, path: str, version: str) -> None:
    """§3.1: `/versions/{v}` or `/labels/{l}`: only that version."""
    status, doc = tfs.get(path)
    assert status == 200
    assert doc == {"model_version_status": [{"version": version, "state": "AVAILABLE", "status": OK_STATUS}]}


def test_url_matching_is_case_insensitive_s31(tfs: Client) -> None:
    """§3.1: URL matching is case-insensitive (the verb after ':' is not)."""
    assert post(tfs, "/V1/MODELS/half_plus_two/Versions/1:predict", {"instances": [1.0]}) == (
        200, {"predictions": [2.5]})
    status, doc = post(tfs, f"{HPT}:PREDICT", {"instances": [1.0]})
    assert status == 400 and doc["error"].startswith("Malformed request")


@pytest.mark.parametrize("path", ["/", "/healthz", "/v2/models/half_plus_two", "/v1"])
def test_paths_outside_v1_are_libevents_plain_404_s31(tfs: Client, path: str) -> None:
    """§3.1: only `(?i)/v1/.*` reaches the handler; TF Serving has no health endpoint."""
    status, headers, body = tfs.request("GET", path)
    assert status == 404
    assert headers["content-type"] == "text/html"
    assert b"404 Not Found" in body


def test_content_type_is_json_s31(tfs: Client) -> None:
    status, headers, _ = tfs.request("GET", HPT)
    assert (status, headers["content-type"]) == (200, "application/json")


# ---- §3.3 metadata -----------------------------------------------------------------------


def test_metadata_json_shape_s33(tfs: Client) -> None:
    """§3.3: preserved field names, every field printed, doubled signature_def, init op included."""
    status, doc = tfs.get(f"{HPT}/versions/1/metadata")
    assert status == 200
    assert doc["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert sigs["serving_default"] == {
        "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                                                               "unknown_rank": False},
                         "name": "serving_default_x:0"}},
        "outputs": {"y": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                                                                "unknown_rank": False},
                          "name": "StatefulPartitionedCall:0"}},
        "method_name": "tensorflow/serving/predict", "defaults": {}}
    assert sigs["__saved_model_init_op"] == {
        "inputs": {}, "outputs": {"__saved_model_init_op": {
            "dtype": "DT_INVALID", "tensor_shape": {"dim": [], "unknown_rank": True}, "name": "NoOp"}},
        "method_name": "", "defaults": {}}


@pytest.mark.parametrize(("path", "version"), [(f"{HPT}/metadata", "2"), (f"{HPT}/labels/stable/metadata", "1")])
def test_metadata_latest_and_by_label_s31(tfs: Client, path: str, version: str) -> None:
    """§3.1: metadata without a version is the latest; a label resolves to its version."""
    status, doc = tfs.get(path)
    assert (status, doc["model_spec"]["version"]) == (200, version)


def test_metadata_of_a_real_third_party_model(tfs: Client) -> None:
    """basic-pitch 0.4.0 (TF 2.4 export) reports its real signature."""
    status, doc = tfs.get("/v1/models/basic_pitch/metadata")
    assert status == 200
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    shapes = {k: [int(d["size"]) for d in v["tensor_shape"]["dim"]] for k, v in sig["outputs"].items()}
    assert shapes == {"contour": [-1, 172, 264], "note": [-1, 172, 88], "onset": [-1, 172, 88]}
    assert {k: v["dtype"] for k, v in sig["inputs"].items()} == {"input_2": "DT_FLOAT"}


# ---- §3.2 predict --------------------------------------------------------------------------


def test_row_and_columnar_single_input_s32(tfs: Client) -> None:
    """§3.2 verified values: v2 [3.5,4.0,5.5]; /versions/1 [2.5,3.0,4.5]; columnar answers under outputs."""
    body = {"instances": [1.0, 2.0, 5.0]}
    assert post(tfs, f"{HPT}:predict", body) == (200, {"predictions": [3.5, 4.0, 5.5]})
    assert post(tfs, f"{HPT}/versions/1:predict", body) == (200, {"predictions": [2.5, 3.0, 4.5]})
    assert post(tfs, f"{HPT}:predict", {"inputs": [1.0, 2.0]}) == (200, {"outputs": [3.5, 4.0]})


@pytest.mark.parametrize(("label", "expected"), [("stable", [2.5]), ("canary", [3.5])])
def test_predict_by_label_s36_b026(tfs: Client, label: str, expected: list[float]) -> None:
    """§3.6 / B-026: labels are served at `/labels/<label>:predict`."""
    assert post(tfs, f"{HPT}/labels/{label}:predict", {"instances": [1.0]}) == (200, {"predictions": expected})


def test_label_in_the_version_slot_is_malformed_b026(tfs: Client) -> None:
    """B-026: `/versions/` takes integers only, so `/versions/canary` is a malformed URL."""
    status, doc = post(tfs, f"{HPT}/versions/canary:predict", {"instances": [1.0]})
    assert status == 400
    assert doc["error"] == f"Malformed request: POST {HPT}/versions/canary:predict"


def test_float_formatting_as_tf_serving_prints_s32(tfs: Client) -> None:
    """§3.2 WriteDecimal: %.6g, else %.9g (float) / %.17g (double); `.0` appended; NaN/Infinity tokens."""
    status, _, raw = tfs.request("POST", f"{HPT}/versions/1:predict",
                                 '{"inputs": [0.2, -4, 17999996.0, 2871548756.0, NaN, Infinity, -Infinity]}')
    assert status == 200
    assert raw == b'{"outputs":[2.1,0.0,9e+06,1.43577434e+09,NaN,Infinity,-Infinity]}'
    status, _, raw = tfs.request("POST", "/v1/models/multi:predict",
                                 '{"signature_name": "doubles", "instances": [1.0, 3.0]}')
    assert status == 200
    assert json.loads(raw) == {"predictions": [{"inv": 1.0, "third": 1 / 3}, {"inv": 1 / 3, "third": 1.0}]}
    assert b'"third":0.33333333333333331' in raw


def test_multi_input_rows_b64_and_bytes_outputs_s32(tfs: Client) -> None:
    """§3.2: several inputs per row as objects; a row answer is a list of objects; DT_STRING outputs named
    `*_bytes` come back as {"b64": ...}, other strings raw; b64 objects count as values."""
    status, doc = post(tfs, "/v1/models/multi:predict", {"instances": [
        {"a": [1.0, 2.5], "n": 3, "tag": b64(b"\x00\xffbin")},
        {"a": [0.5, 0.25], "n": -1, "tag": "text"}]})
    assert status == 200
    assert doc == {"predictions": [
        {"bucket_plus_one": 4, "echo_bytes": b64(b"\x00\xffbin"), "score": 3.5, "upper": "\x00\ufffdBIN"},
        {"bucket_plus_one": 0, "echo_bytes": b64(b"text"), "score": 0.75, "upper": "TEXT"}]}


def test_multi_input_columnar_s32(tfs: Client) -> None:
    """§3.2: columnar inputs as an object, answer `{"outputs": {name: tensor}}`."""
    assert post(tfs, "/v1/models/multi:predict", {"inputs": {
        "a": [[1, 2], [3, 4]], "n": [10, 20], "tag": ["x", b64(b"y")]}}) == (200, {"outputs": {
            "bucket_plus_one": [11, 21], "echo_bytes": [b64(b"x"), b64(b"y")], "score": [3.0, 7.0],
            "upper": ["X", "Y"]}})


def test_string_model_rows_and_columns_s32(tfs: Client) -> None:
    """§3.2 types: DT_STRING takes a string or {"b64": ...}; `_bytes` outputs are base64, others raw."""
    status, doc = post(tfs, "/v1/models/strings:predict", {"instances": ["abc", b64(b"\x00\x01z")]})
    assert status == 200
    assert doc == {"predictions": [
        {"length": 3, "text_bytes": b64(b"abc\x00\xc3\xbf"), "upper": "ABC"},
        {"length": 3, "text_bytes": b64(b"\x00\x01z\x00\xc3\xbf"), "upper": "\x00\x01Z"}]}
    assert post(tfs, "/v1/models/strings:predict", {"inputs": {"text": ["a b"]}}) == (
        200, {"outputs": {"length": [3], "text_bytes": [b64(b"a b\x00\xc3\xbf")], "upper": ["A B"]}})


def test_raw_base64_text_reaches_the_model_as_text_b030(tfs: Client) -> None:
    """B-030 (first trigger): a base64 string not wrapped in {"b64": ...} is accepted as the text itself."""
    encoded = base64.b64encode(b"\x89PNG").decode()
    status, doc = post(tfs, "/v1/models/strings:predict", {"instances": [encoded]})
    assert status == 200
    assert doc["predictions"][0]["upper"] == encoded.upper()
    assert doc["predictions"][0]["length"] == len(encoded)


def test_b64_for_a_numeric_input_is_refused_b030(tfs: Client) -> None:
    """B-030 (second trigger): base64 of a float array's bytes for a DT_FLOAT input -> 400."""
    status, doc = post(tfs, f"{HPT}:predict", {"instances": [{"b64": "AAAAAAAA8D8AAAAAAAAAQA=="}]})
    assert status == 400
    assert "Type: Object is not of expected type: float" in doc["error"]


@pytest.mark.parametrize(
    ("ref", "path", "doc", "message"),
    [
        ("§3.2 plain list to several inputs", "multi", {"instances": [[1.0, 2.0]]},
         "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
         "tensorinfo_map"),
        ("§3.2 keys must equal the inputs", "multi", {"instances": [{"a": [1.0, 2.0], "n": 1}]},
         "must only have keys: a,n,tag"),
        ("§3.2 missing named input", "multi", {"inputs": {"a": [[1, 2]], "n": [1]}},
         "Missing named input: tag in 'inputs' object."),
        ("§3.2 plain columnar value to several inputs", "multi", {"inputs": [1.0]},
         "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
         "tensorinfo_map"),
        ("§3.2 string input type", "multi", {"instances": [{"a": [1.0, 2.0], "n": 1, "tag": 5}]},
         "is not of expected type: string"),
        ("§3.2 bad base64", "strings", {"instances": [{"b64": "%%%"}]}, "Unable to base64 decode"),
        ("§3.2 int64 input type", "multi", {"instances": [{"a": [1, 2], "n": 1.5, "tag": "t"}]},
         "Type: Number is not of expected type: int64"),
        ("§3.2 bool input type", "multi", {"signature_name": "negate", "instances": [1]},
         "is not of expected type: bool"),
        ("§3.2 row outputs need one batch size", "multi", {"signature_name": "inconsistent", "instances": [1, 2, 3]},
         "Tensor name: y has inconsistent batch size: 3 expecting: 1"),
        ("§3.2 float from a string", "half_plus_two", {"instances": ["a"]}, "is not of expected type: float"),
    ],
)
def test_predict_request_errors(tfs: Client, ref: str, path: str, doc: Any, message: str) -> None:
    status, body = post(tfs, f"/v1/models/{path}:predict", doc)
    assert status == 400, ref
    assert list(body) == ["error"]
    assert message in body["error"], ref


def test_bool_and_columnar_batch_sizes_s32(tfs: Client) -> None:
    """§3.2: DT_BOOL takes true/false; columnar outputs may differ in dimension 0."""
    assert post(tfs, "/v1/models/multi:predict", {"signature_name": "negate", "instances": [True, False]}) == (
        200, {"predictions": [False, True]})
    assert post(tfs, "/v1/models/multi:predict", {"signature_name": "inconsistent", "inputs": [1, 2, 3]}) == (
        200, {"outputs": {"total": [6.0], "y": [2.0, 4.0, 6.0]}})


def test_basic_pitch_predicts_one_window(tfs: Client) -> None:
    """A real model: one zero window of 43844 samples gives 172 frames of note, onset and contour."""
    body = '{"instances": [[' + ",".join(["[0.0]"] * 43844) + "]]}"
    status, doc = tfs.post("/v1/models/basic_pitch:predict", body)
    assert status == 200
    (row,) = doc["predictions"]
    assert {k: (len(v), len(v[0])) for k, v in row.items()} == {
        "contour": (172, 264), "note": (172, 88), "onset": (172, 88)}
    assert all(isinstance(x, float) and 0.0 <= x <= 1.0 for x in row["note"][0])


# ---- B-031 signature_name ------------------------------------------------------------------


def test_missing_default_signature_b031(tfs: Client) -> None:
    """B-031: without signature_name the server looks for serving_default; naming the signature works."""
    status, doc = post(tfs, "/v1/models/nodefault:predict", {"instances": [1.0]})
    assert (status, doc) == (400, {"error": 'Serving signature name: "serving_default" not found in signature def'})
    assert post(tfs, "/v1/models/nodefault:predict", {"signature_name": "predict_images", "instances": [1.0]}) == (
        200, {"predictions": [2.0]})


# ---- §3.4 classify / regress -----------------------------------------------------------------


def test_classify_results_s34(tfs: Client) -> None:
    """§3.4: tf.Examples from JSON features; `results` holds [label, score] pairs per example."""
    status, doc = post(tfs, "/v1/models/examples:classify", {"examples": [{"x": 1.0}, {"x": -2.0, "w": 0.5}]})
    assert status == 200
    assert doc == {"results": [[["neg", 0.268941402], ["pos", 0.731058598]],
                               [["neg", 0.731058598], ["pos", 0.268941432]]]}


def test_classify_without_classes_output_uses_empty_labels_and_context_s34(tfs: Client) -> None:
    """§3.4: label "" when the signature has no classes output; `context` features join every example."""
    status, doc = post(tfs, "/v1/models/examples:classify", {
        "signature_name": "classify_scores_only", "context": {"w": 2.0}, "examples": [{"x": 1.0}]})
    assert (status, doc) == (200, {"results": [[["", 0.119202912], ["", 0.880797088]]]})


def test_regress_results_s34(tfs: Client) -> None:
    """§3.4: regress returns one value per example (2x + 1 here), under `results`."""
    body = {"signature_name": "regress", "examples": [{"x": 1.0}, {"x": -2.0, "w": 0.5}]}
    assert post(tfs, "/v1/models/examples/versions/1:regress", body) == (200, {"results": [3.0, -1.0]})


def test_predict_signature_on_serialized_examples_s32(tfs: Client) -> None:
    """§3.2 with a DT_STRING input: serialized tf.Example bytes go in as {"b64": ...}."""
    from tfms.runtime.classify import Example

    example: Any = Example()
    example.features.feature["x"].float_list.value.append(4.0)
    status, doc = post(tfs, "/v1/models/examples:predict", {
        "signature_name": "predict", "instances": [b64(example.SerializeToString())]})
    assert (status, doc) == (200, {"predictions": [[9.0]]})


@pytest.mark.parametrize(
    ("verb", "doc", "message"),
    [
        ("classify", {"examples": []}, "'examples' value is an empty array"),
        ("classify", {"context": {}}, "When method is classify, key 'examples' is expected and was not found"),
        ("regress", {"examples": [{"x": 1.0}]},
         "No regression outputs found in signature: expected 'outputs'."),
        ("classify", {"signature_name": "regress", "examples": [{"x": 1.0}]},
         "Expected classification signature outputs to contain at least one of 'classes' or 'scores'."),
        ("classify", {"examples": [{"x": [1, 2.5]}]}, "Unexpected element type in feature: x expecting type: int64"),
    ],
)
def test_classify_regress_errors_s34(tfs: Client, verb: str, doc: Any, message: str) -> None:
    status, body = post(tfs, f"/v1/models/examples:{verb}", doc)
    assert status == 400
    assert message in body["error"]


# ---- §3.5 errors ------------------------------------------------------------------------------

ERRORS = [
    ("§3.5 unknown model", "POST", "/v1/models/half:predict", '{"instances": [1]}', 404,
     "Servable not found for request: Latest(half)"),
    ("§3.5 unknown version", "POST", f"{HPT}/versions/9:predict", '{"instances": [1]}', 404,
     "Servable not found for request: Specific(half_plus_two, 9)"),
    ("§3.5 unknown label", "POST", f"{HPT}/labels/beta:predict", '{"instances": [1]}', 400,
     "Unrecognized servable version label: beta"),
    ("§3.5 GET on a POST path", "GET", f"{HPT}:predict", None, 400, f"Malformed request: GET {HPT}:predict"),
    ("§3.5 non-numeric version", "GET", f"{HPT}/versions/abc", None, 400,
     f"Malformed request: GET {HPT}/versions/abc"),
    ("§3.5 version and label", "POST", f"{HPT}/versions/1/labels/stable:predict", "{}", 400,
     f"Malformed request: POST {HPT}/versions/1/labels/stable:predict"),
    ("§3.5 empty body", "POST", f"{HPT}:predict", "", 400, "JSON Parse error: The document is empty"),
    ("§3.5 bad JSON", "POST", f"{HPT}:predict", "{bad", 400,
     "JSON Parse error: Missing a name for object member. at offset: 1"),
    ("§3.5 / B-028 both keys", "POST", f"{HPT}:predict", '{"instances": [[1.0, 2.0]], "inputs": {"x": [[1.0]]}}',
     400, "expecting only one of 'inputs' or 'instances' keys to exist"),
    ("§3.5 / B-028 neither key", "POST", f"{HPT}:predict", '{"signature_name": "serving_default"}', 400,
     "Missing 'inputs' or 'instances' key"),
    ("§3.5 empty instances", "POST", f"{HPT}:predict", '{"instances": []}', 400, "No values in 'instances' array"),
    ("§3.5 signature_name type", "POST", f"{HPT}:predict", '{"signature_name": 1, "instances": [1]}', 400,
     "'signature_name' key must be a string value."),
    ("§3.5 unknown signature", "POST", f"{HPT}:predict", '{"signature_name": "x", "instances": [1]}', 400,
     'Serving signature name: "x" not found in signature def'),
    ("§3.3 no model name", "GET", "/v1/models", None, 400, "Missing model name in request."),
]


@pytest.mark.parametrize(("ref", "method", "path", "body", "status", "message"), ERRORS,
                         ids=[e[0] for e in ERRORS])
def test_error_codes_and_messages_s35(tfs: Client, ref: str, method: str, path: str, body: str | None,
                                      status: int, message: str) -> None:
    """§3.5: `{"error": "..."}` with the HTTP status of `ToHTTPStatusCode`."""
    got, headers, raw = tfs.request(method, path, body)
    assert got == status, ref
    assert headers["content-type"] == "application/json"
    doc = json.loads(raw)
    assert list(doc) == ["error"]
    assert message in doc["error"], ref


def test_error_body_is_rapidjson_pretty_s35(tfs: Client) -> None:
    _, _, raw = tfs.request("POST", "/v1/models/half:predict", '{"instances": [1]}')
    assert raw == b'{ "error": "Servable not found for request: Latest(half)" }'


def test_keep_alive_pipelining_and_chunked_bodies(tfs: Client) -> None:
    """Clients keep connections open and may send chunked bodies; answers come back in order."""
    with socket.create_connection(("127.0.0.1", tfs.port), timeout=30) as sock:
        part1, part2 = b'{"ins', b'tances": [1.0, 2.0, 5.0]}'
        chunked = (b"POST /v1/models/half_plus_two/versions/1:predict HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(part1), part1, len(part2), part2))
        plain = b"GET /v1/models/half_plus_two/versions/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock.sendall(chunked + plain)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    first, second = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK") and first.endswith(b'{"predictions":[2.5,3.0,4.5]}')
    assert second.startswith(b"200 OK") and b'"version": "2"' in second


# ---- §3.7 monitoring and batching, §3.8 warmup ---------------------------------------------------


def test_prometheus_metrics_on_the_rest_port_s37(tfs: Client) -> None:
    """§3.7: `prometheus_config { enable: true }` with an empty path serves the default path on the REST port."""
    post(tfs, "/v1/models/strings:predict", {"instances": ["m"]})
    post(tfs, "/v1/models/strings:predict", {"instances": [1]})
    status, headers, raw = tfs.request("GET", METRICS_PATH)
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    lines = raw.decode().splitlines()
    ok = [ln for ln in lines if ln.startswith(':tensorflow:serving:request_count{model_name="strings",status="OK"}')]
    bad = [ln for ln in lines if ln.startswith(
        ':tensorflow:serving:request_count{model_name="strings",status="INVALID_ARGUMENT"}')]
    assert ok and int(ok[0].rsplit(" ", 1)[1]) >= 1
    assert bad and int(bad[0].rsplit(" ", 1)[1]) >= 1
    assert any(ln.startswith(":tensorflow:cc:saved_model:load_attempt_count{") and 'status="success"' in ln
               for ln in lines)


def test_warmup_records_are_replayed_before_serving_s38(tfs: Client) -> None:
    """§3.8 `--enable_model_warmup` (default true) replays assets.extra/tf_serving_warmup_requests."""
    log: str = tfs.log()  # type: ignore[attr-defined]
    assert "Number of warmup records replayed: 3" in log
    assert post(tfs, "/v1/models/warmup:predict", {"instances": [1.5]}) == (200, {"predictions": [3.0]})


def test_batching_flags_are_accepted_s37(tfs: Client) -> None:
    """§3.7: a valid batching parameters file starts the server (requests are not batched locally)."""
    log: str = tfs.log()  # type: ignore[attr-defined]
    assert "--enable_batching=True is accepted but not emulated" in log


def test_bad_warmup_record_fails_the_load_s38(tmp_path: Path) -> None:
    """§3.8: a warmup record that cannot run fails the version, and the server does not start."""
    from tests.runtime.conftest import RuntimeProcess

    port = free_port()
    proc = RuntimeProcess([f"--rest_api_port={port}", "--model_name=bad", f"--model_base_path={zoo() / 'badwarmup'}"],
                          tmp_path / "bad.log")
    assert proc.wait_exit() == 255
    assert "Failed to start server. Error: Loading servable: {name: bad version: 1} failed" in proc.log()
    assert "input tensor alias not found in signature: nope. Inputs expected to be in the set {x}." in proc.log()
    # Turned off, the same model loads.
    port = free_port()
    ok = start_runtime([f"--rest_api_port={port}", "--model_name=bad", f"--model_base_path={zoo() / 'badwarmup'}",
                        "--enable_model_warmup=false"], tmp_path, port)
    assert Client(port).post("/v1/models/bad:predict", {"instances": [2.0]}) == (200, {"predictions": [4.0]})
    assert ok.stop() == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 6\n",
         "final entry in allowed_batch_sizes must equal max_batch_size"),
        ("max_batch_size: 8\n", "Invalid BatchingParameters"),
    ],
)
def test_bad_batching_file_fails_startup_s37(tmp_path: Path, text: str, message: str) -> None:
    from tests.runtime.conftest import RuntimeProcess

    (tmp_path / "batching.config").write_text(text)
    proc = RuntimeProcess(["--rest_api_port=0", f"--model_base_path={HALF_PLUS_TWO}", "--enable_batching",
                           f"--batching_parameters_file={tmp_path / 'batching.config'}"], tmp_path / "b.log")
    assert proc.wait_exit() == 255
    assert message in proc.log()
