"""JSON <-> tensors for :predict: row/columnar decoding, b64, dtype checks, and encoding."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from tfms.runtime import dtypes as dt
from tfms.runtime.errors import Code, ServingError
from tfms.runtime.signature import TensorInfo
from tfms.runtime.tensor_decode import decode_predict_inputs
from tfms.runtime.tensor_encode import encode_predict

X = {"x": TensorInfo("x:0", dt.DT_FLOAT, ((-1, ""),))}
MULTI = {
    "a": TensorInfo("a:0", dt.DT_FLOAT, ((-1, ""), (2, ""))),
    "n": TensorInfo("n:0", dt.DT_INT64, ((-1, ""),)),
    "tag": TensorInfo("tag:0", dt.DT_STRING, ((-1, ""),)),
}


def decode(doc: Any, inputs: dict[str, TensorInfo] = X) -> tuple[dict[str, np.ndarray], str]:
    body = json.dumps(doc)
    return decode_predict_inputs(json.loads(body), inputs, "true" in body or "false" in body)


def error(doc: Any, inputs: dict[str, TensorInfo] = X) -> ServingError:
    with pytest.raises(ServingError) as info:
        decode(doc, inputs)
    return info.value


def test_row_single_input() -> None:
    tensors, fmt = decode({"instances": [1.0, 2, 5.0]})
    assert fmt == "row"
    assert tensors["x"].dtype == np.float32
    assert tensors["x"].tolist() == [1.0, 2.0, 5.0]


def test_columnar_single_input_list_and_scalar() -> None:
    tensors, fmt = decode({"inputs": [[1.5, 2.5]]})
    assert fmt == "columnar"
    assert tensors["x"].shape == (1, 2)
    tensors, _ = decode({"inputs": 3.0})
    assert tensors["x"].shape == ()
    assert float(tensors["x"]) == 3.0


def test_row_multiple_inputs_with_b64() -> None:
    doc = {"instances": [
        {"a": [1.0, 2.0], "n": 3, "tag": {"b64": base64.b64encode(b"\x00\xffhi").decode()}},
        {"a": [3.0, 4.0], "n": 4, "tag": "plain"},
    ]}
    tensors, _ = decode(doc, MULTI)
    assert tensors["a"].shape == (2, 2)
    assert tensors["n"].dtype == np.int64
    assert tensors["n"].tolist() == [3, 4]
    assert tensors["tag"].tolist() == [b"\x00\xffhi", b"plain"]


def test_columnar_multiple_inputs_may_differ_in_dim0() -> None:
    tensors, _ = decode({"inputs": {"a": [[1, 2]], "n": [1, 2, 3], "tag": ["x"], "extra": 1}}, MULTI)
    assert tensors["a"].tolist() == [[1.0, 2.0]]
    assert tensors["n"].tolist() == [1, 2, 3]
    assert tensors["tag"].tolist() == [b"x"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"instances": [1.0], "inputs": [1.0]},
         "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "),
        ({"signature_name": "x"}, "Missing 'inputs' or 'instances' key"),
        ({"instances": []}, "No values in 'instances' array"),
        ({"instances": 5}, "Excepting 'instances' to be an list/array"),
        ({"instances": [1.0, "a"]},
         "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"a\" "
         "Type: String is not of expected type: float"),
        ({"instances": [1.0, True]}, "JSON Value: true Type: True is not of expected type: float"),
        ({"instances": [[1.0], [2.0, 3.0]]}, "Expecting tensor size: 1 but got: 2"),
        ({"instances": [16777217]}, "Cannot convert JSON value: 16777217 to float without loss of precision."),
        ({"instances": [{"b64": "AAAA"}]}, "Type: Object is not of expected type: float"),
        ({"instances": [[1.0, [2.0]]]}, "Encountered list at unexpected level: 1 expected < 1"),
        ({"instances": [[[1.0], 2.0]]}, "found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
        ({"inputs": {"y": 1}}, "Missing named input: x in 'inputs' object."),
    ],
)
def test_single_input_errors(doc: Any, message: str) -> None:
    err = error(doc)
    assert err.code == Code.INVALID_ARGUMENT
    assert message in err.message


def test_both_keys_message_quotes_the_document() -> None:
    err = error({"instances": [1.0], "inputs": [1.0]})
    assert err.message.startswith('JSON Value: {\n    "instances": [\n        1.0\n    ],')


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"instances": [[1.0, 2.0]]},
         "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
         "tensorinfo_map"),
        ({"instances": [{"a": [1.0, 2.0], "n": 1}]}, "of 'instances' list. JSON object: {"),
        ({"instances": [{"a": [1.0, 2.0], "n": 1}]}, "must only have keys: a,n,tag"),
        ({"instances": [{"a": [1, 2], "n": 1, "tag": "t", "z": 0}]},
         "Failed to process element: 0 key: z of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does "
         "not have named input: z"),
        ({"instances": [{"a": [1, 2], "n": 1, "tag": "t"}, [1]]}, "Expecting object but got list at item 1"),
        ({"instances": [{"a": [1, 2], "n": 1.5, "tag": "t"}]},
         "key: n of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: 1.5 Type: Number is not of expected "
         "type: int64"),
        ({"instances": [{"a": [1, 2], "n": 1, "tag": 7}]}, "is not of expected type: string"),
        ({"instances": [{"a": [1, 2], "n": 1, "tag": {"b64": "!!"}}]}, "Unable to base64 decode"),
        ({"instances": [{"a": [1, 2], "n": 1, "tag": {"b64": 1}}]}, "not formatted correctly for base64 data"),
        ({"inputs": [1.0]},
         "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
         "tensorinfo_map"),
        ({"inputs": {"a": [[1, 2]], "tag": ["x"]}}, "Missing named input: n in 'inputs' object."),
    ],
)
def test_multi_input_errors(doc: Any, message: str) -> None:
    assert message in error(doc, MULTI).message


@pytest.mark.parametrize(
    ("dtype", "good", "bad", "type_string"),
    [
        (dt.DT_INT32, [1, -2], [2**31], "int32"),
        (dt.DT_INT64, [2**40], [1.0], "int64"),
        (dt.DT_UINT32, [2**32 - 1], [-1], "uint32"),
        (dt.DT_BOOL, [True, False], [1], "bool"),
        (dt.DT_DOUBLE, [0.1, 2], ["x"], "double"),
        (dt.DT_UINT8, [255], [1.5], "uint8"),
    ],
)
def test_dtype_checks(dtype: int, good: list[Any], bad: list[Any], type_string: str) -> None:
    inputs = {"v": TensorInfo("v:0", dtype, ((-1, ""),))}
    tensors, _ = decode({"instances": good}, inputs)
    assert tensors["v"].dtype == dt.dtype(dtype).numpy
    assert tensors["v"].tolist() == good
    assert f"is not of expected type: {type_string}" in error({"instances": bad}, inputs).message


def test_unsupported_dtype_is_unimplemented() -> None:
    err = error({"instances": [1.0]}, {"h": TensorInfo("h:0", 19, ((-1, ""),))})  # DT_HALF
    assert "Conversion of JSON Value: 1.0 to type: half" in err.message


def test_nan_and_infinity_inputs() -> None:
    tensors, _ = decode_predict_inputs(json.loads('{"instances": [NaN, Infinity, -Infinity]}'), X, False)
    values = tensors["x"].tolist()
    assert np.isnan(values[0])
    assert values[1:] == [float("inf"), float("-inf")]


# ---- encoding ------------------------------------------------------------------------


def test_row_single_output_is_plain_list() -> None:
    body = encode_predict({"y": np.array([2.5, 3.0, 4.5], np.float32)}, {"y": dt.DT_FLOAT}, "row")
    assert body == b'{"predictions":[2.5,3.0,4.5]}'


def test_row_multiple_outputs_are_objects_per_row() -> None:
    outputs = {
        "score": np.array([6.0, 3.0], np.float32),
        "bucket_plus_one": np.array([4, 5], np.int64),
        "img_bytes": np.array([b"\x00\x01", b"ok"], dtype=object),
        "label": np.array([b"cat", "d\u00f6g".encode()], dtype=object),
    }
    doc = json.loads(encode_predict(outputs, {}, "row"))
    assert doc == {"predictions": [
        {"bucket_plus_one": 4, "img_bytes": {"b64": "AAE="}, "label": "cat", "score": 6.0},
        {"bucket_plus_one": 5, "img_bytes": {"b64": "b2s="}, "label": "d\u00f6g", "score": 3.0},
    ]}


def test_columnar_outputs() -> None:
    single = encode_predict({"y": np.array([[0.1, 1 / 3]], np.float32)}, {}, "columnar")
    assert single == b'{"outputs":[[0.1,0.333333343]]}'
    multi = json.loads(encode_predict(
        {"bucket_plus_one": np.array([4, 5]), "score": np.array([6.0, 3.0], np.float32)}, {}, "columnar"))
    assert multi == {"outputs": {"bucket_plus_one": [4, 5], "score": [6.0, 3.0]}}
    scalar = encode_predict({"t": np.array(True)}, {}, "columnar")
    assert scalar == b'{"outputs":true}'


def test_nan_infinity_and_large_floats_are_emitted_as_tf_serving_does() -> None:
    body = encode_predict({"y": np.array([np.nan, np.inf, -np.inf, 9e6, 1435774380], np.float32)}, {}, "row")
    assert body == b'{"predictions":[NaN,Infinity,-Infinity,9e+06,1.43577434e+09]}'


def test_nested_and_empty_shapes() -> None:
    body = encode_predict({"y": np.arange(12, dtype=np.int32).reshape(2, 3, 2)}, {}, "row")
    assert json.loads(body) == {"predictions": [[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [10, 11]]]}
    body = encode_predict({"y": np.zeros((2, 0), np.float32)}, {}, "row")
    assert json.loads(body) == {"predictions": [[], []]}
    body = encode_predict({"y": np.zeros((2, 0, 3), np.float32)}, {}, "columnar")
    assert json.loads(body) == {"outputs": [[], []]}


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)},
         "Tensor name: b has inconsistent batch size: 3 expecting: 2"),
        ({"a": np.float32(1.0).reshape(())}, "Tensor name: a has no shape information "),
        ({"a": np.zeros((0,), np.float32)}, "Tensor name: a has invalid batch size: 0"),
        ({"a": np.zeros(2, np.float16)}, "Failed to write JSON value for tensor type: half"),
    ],
)
def test_row_output_errors(outputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ServingError, match="^" + message.replace("(", r"\(")):
        encode_predict(outputs, {"a": dt.DT_FLOAT, "b": dt.DT_FLOAT} if "half" not in message else {"a": 19}, "row")
