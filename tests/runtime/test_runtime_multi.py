"""A multi-input model with string, int and bool tensors, built with tensorflow in a
temporary directory, served by the runtime process."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.conftest import Client, free_port, start_runtime

pytestmark = pytest.mark.slow

BUILD_MODEL = r'''
import sys
import tensorflow as tf

class Multi(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                  tf.TensorSpec([None], tf.int64, name="n"),
                                  tf.TensorSpec([None], tf.string, name="tag")])
    def serve(self, a, n, tag):
        return {"score": tf.reduce_sum(a, axis=1), "bucket_plus_one": n + 1,
                "echo_bytes": tag, "upper": tf.strings.upper(tag)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def inconsistent(self, x):
        return {"y": x * 2.0, "total": tf.reduce_sum(x, keepdims=True)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.bool, name="b")])
    def negate(self, b):
        return {"not_b": tf.logical_not(b)}

m = Multi()
tf.saved_model.save(m, sys.argv[1], signatures={
    "serving_default": m.serve, "inconsistent": m.inconsistent, "negate": m.negate})
'''


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp("multi")
    base = tmp / "multi"
    subprocess.run([sys.executable, "-c", BUILD_MODEL, str(base / "1")], check=True, capture_output=True,
                   timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    port = free_port()
    proc = start_runtime([f"--rest_api_port={port}", "--model_name=multi", f"--model_base_path={base}"],
                         Path(tmp), port)
    yield Client(port)
    assert proc.stop() == 0, proc.log()


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def test_metadata_lists_every_signature(multi: Client) -> None:
    status, doc = multi.get("/v1/models/multi/metadata")
    assert status == 200
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == {"serving_default", "inconsistent", "negate", "__saved_model_init_op"}
    inputs = sigs["serving_default"]["inputs"]
    assert {k: v["dtype"] for k, v in inputs.items()} == {"a": "DT_FLOAT", "n": "DT_INT64", "tag": "DT_STRING"}
    assert [d["size"] for d in inputs["a"]["tensor_shape"]["dim"]] == ["-1", "2"]


def test_multi_input_rows_with_b64_and_bytes_output(multi: Client) -> None:
    status, doc = multi.post("/v1/models/multi:predict", {"instances": [
        {"a": [1.0, 2.5], "n": 3, "tag": b64(b"\x00\xffbin")},
        {"a": [0.5, 0.25], "n": -1, "tag": "text"},
    ]})
    assert status == 200
    assert doc == {"predictions": [
        {"bucket_plus_one": 4, "echo_bytes": b64(b"\x00\xffbin"), "score": 3.5, "upper": "\x00\ufffdBIN"},
        {"bucket_plus_one": 0, "echo_bytes": b64(b"text"), "score": 0.75, "upper": "TEXT"},
    ]}


def test_multi_input_columnar(multi: Client) -> None:
    status, doc = multi.post("/v1/models/multi:predict", {"inputs": {
        "a": [[1, 2], [3, 4]], "n": [10, 20], "tag": ["x", b64(b"y")]}})
    assert status == 200
    assert doc == {"outputs": {"bucket_plus_one": [11, 21], "echo_bytes": [b64(b"x"), b64(b"y")],
                               "score": [3.0, 7.0], "upper": ["X", "Y"]}}


def test_inconsistent_batch_sizes_fail_in_rows_but_not_columns(multi: Client) -> None:
    status, doc = multi.post("/v1/models/multi:predict", {"signature_name": "inconsistent", "instances": [1, 2, 3]})
    assert status == 400
    assert doc == {"error": "Tensor name: y has inconsistent batch size: 3 expecting: 1"}
    status, doc = multi.post("/v1/models/multi:predict", {"signature_name": "inconsistent", "inputs": [1, 2, 3]})
    assert (status, doc) == (200, {"outputs": {"total": [6.0], "y": [2.0, 4.0, 6.0]}})


def test_bool_signature(multi: Client) -> None:
    status, doc = multi.post("/v1/models/multi:predict", {"signature_name": "negate", "instances": [True, False]})
    assert (status, doc) == (200, {"predictions": [False, True]})
    status, doc = multi.post("/v1/models/multi:predict", {"signature_name": "negate", "instances": [1]})
    assert status == 400
    assert "is not of expected type: bool" in doc["error"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"instances": [[1.0, 2.0]]}, "instances is a plain list, but expecting list of objects"),
        ({"instances": [{"a": [1.0, 2.0], "n": 1}]}, "must only have keys: a,n,tag"),
        ({"instances": [{"a": [1.0, 2.0], "n": 1, "tag": 5}]}, "is not of expected type: string"),
        ({"instances": [{"a": [1.0, 2.0], "n": 1, "tag": {"b64": "%%%"}}]}, "Unable to base64 decode"),
        ({"inputs": {"a": [[1, 2]], "n": [1]}}, "Missing named input: tag in 'inputs' object."),
        ({"inputs": [1.0]}, "inputs is a plain value/list, but expecting an object"),
    ],
)
def test_multi_input_errors(multi: Client, doc: object, message: str) -> None:
    status, body = multi.post("/v1/models/multi:predict", doc)
    assert status == 400
    assert message in body["error"]
