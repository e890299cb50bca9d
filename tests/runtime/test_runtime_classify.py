""":classify and :regress over tf.Example, with a fake servable that decodes the Examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfms.runtime import dtypes as dt
from tfms.runtime.classify import Example, classify_or_regress, parse_examples
from tfms.runtime.errors import ServingError
from tfms.runtime.signature import Signature, TensorInfo

STR = TensorInfo("inputs:0", dt.DT_STRING, ((-1, ""),))


class ExampleModel:
    """regress: outputs = sum of feature "x"; classify: classes a/b with scores x, 1 - x."""

    def __init__(self) -> None:
        self.signatures = {
            "regress": Signature({"inputs": STR}, {"outputs": TensorInfo("o:0", dt.DT_FLOAT, ((-1, ""),))}),
            "serving_default": Signature(
                {"inputs": STR},
                {"classes": TensorInfo("c:0", dt.DT_STRING, ((-1, ""), (2, ""))),
                 "scores": TensorInfo("s:0", dt.DT_FLOAT, ((-1, ""), (2, "")))},
            ),
        }

    def _x(self, serialized: np.ndarray) -> list[float]:
        values = []
        for raw in serialized.tolist():
            example = Example()
            example.ParseFromString(raw)
            values.append(sum(example.features.feature["x"].float_list.value))  # type: ignore[attr-defined]
        return values

    def run(self, sig_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        xs = np.array(self._x(inputs["inputs"]), np.float32)
        if sig_name == "regress":
            return {"outputs": xs.reshape(-1, 1)}
        classes = np.array([[b"a", b"b"]] * len(xs), dtype=object)
        return {"classes": classes, "scores": np.stack([xs, 1 - xs], axis=1)}

    def close(self) -> None:
        pass


def test_regress_results() -> None:
    body = b'{"signature_name": "regress", "examples": [{"x": [0.25, 0.5]}, {"x": 1.5, "tag": "t"}]}'
    assert json.loads(classify_or_regress("regress", body, ExampleModel)) == {"results": [0.75, 1.5]}


def test_classify_results_pairs_labels_and_scores() -> None:
    body = b'{"examples": [{"x": 0.25}], "context": {"shared": [1, 2]}}'
    assert json.loads(classify_or_regress("classify", body, ExampleModel)) == {"results": [[["a", 0.25], ["b", 0.75]]]}


def test_context_is_merged_into_each_example() -> None:
    (serialized,) = parse_examples({"context": {"c": "ctx"}, "examples": [{"x": 1.0, "b": {"b64": "AAE="}}]})
    example = Example()
    example.ParseFromString(serialized)
    features = example.features.feature  # type: ignore[attr-defined]
    assert list(features["c"].bytes_list.value) == [b"ctx"]
    assert list(features["x"].float_list.value) == [1.0]
    assert list(features["b"].bytes_list.value) == [b"\x00\x01"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "When method is classify, key 'examples' is expected and was not found"),
        ({"examples": {}}, "Expecting 'examples' value to be an list/array"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": [1]}, "Example must be JSON object but got JSON Number"),
        ({"examples": [{"f": [1, 2.5]}]}, "Unexpected element type in feature: f expecting type: int64"),
        ({"examples": [{"f": None}]}, "Feature: f has element with unexpected JSON type: Null"),
        ({"examples": [{"f": [[1]]}]}, "Feature: f has element with unexpected JSON type: Array"),
        ({"examples": [{"f": 2**63}]}, "Feature: f has uint64 element. Only int64 is supported."),
    ],
)
def test_example_errors(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ServingError) as info:
        parse_examples(doc)
    assert message in info.value.message
