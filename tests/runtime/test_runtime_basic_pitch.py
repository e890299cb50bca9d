"""basic-pitch 0.4.0's SavedModel, which `tf.saved_model.load` cannot load under Keras 3
but TF Serving-style graph loading can. Fetched from PyPI into the test cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models import basic_pitch_model_dir
from tests.runtime.conftest import Client, free_port, start_runtime

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def basic_pitch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    base = basic_pitch_model_dir()
    port = free_port()
    proc = start_runtime([f"--rest_api_port={port}", "--model_name=basic_pitch", f"--model_base_path={base}"],
                         Path(tmp_path_factory.mktemp("bp")), port)
    yield Client(port)
    assert proc.stop() == 0, proc.log()


def _shape(info: dict[str, object]) -> list[int]:
    shape = info["tensor_shape"]
    assert isinstance(shape, dict)
    return [int(d["size"]) for d in shape["dim"]]


def test_basic_pitch_metadata(basic_pitch: Client) -> None:
    status, doc = basic_pitch.get("/v1/models/basic_pitch/metadata")
    assert status == 200
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert {k: _shape(v) for k, v in sig["inputs"].items()} == {"input_2": [-1, 43844, 1]}
    assert {k: _shape(v) for k, v in sig["outputs"].items()} == {
        "contour": [-1, 172, 264], "note": [-1, 172, 88], "onset": [-1, 172, 88]}
    assert sig["inputs"]["input_2"]["dtype"] == "DT_FLOAT"


def test_basic_pitch_predict_one_zero_example(basic_pitch: Client) -> None:
    body = '{"instances": [[' + ",".join(["[0.0]"] * 43844) + "]]}"
    status, doc = basic_pitch.post("/v1/models/basic_pitch:predict", body)
    assert status == 200
    (row,) = doc["predictions"]
    assert sorted(row) == ["contour", "note", "onset"]
    shapes = {k: (len(v), len(v[0])) for k, v in row.items()}
    assert shapes == {"contour": (172, 264), "note": (172, 88), "onset": (172, 88)}
    assert all(isinstance(x, float) for x in row["note"][0])
