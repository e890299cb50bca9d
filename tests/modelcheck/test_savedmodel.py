"""saved_model.pb decoded with our own descriptors agrees with tensorflow's own protos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tfms.modelcheck.savedmodel import SavedModelError, parse_saved_model
from tfms.modelcheck.warmup import MAX_RECORDS, WarmupError, read_warmup, tfrecord

HALF_PLUS_TWO = REPO / "manifests" / "examples" / "models" / "half_plus_two"

TF_DUMP = r'''
import json, sys
from tensorflow.core.protobuf import saved_model_pb2
out = {}
for path in sys.argv[1:]:
    sm = saved_model_pb2.SavedModel.FromString(open(path, "rb").read())
    graphs = []
    for mg in sm.meta_graphs:
        sigs = {}
        for key, sig in mg.signature_def.items():
            def t(m):
                known = m.HasField("tensor_shape") and not m.tensor_shape.unknown_rank
                shape = [d.size for d in m.tensor_shape.dim] if known else None
                return [m.name, m.dtype, shape]
            ins = {k: t(v) for k, v in sig.inputs.items()}
            outs = {k: t(v) for k, v in sig.outputs.items()}
            sigs[key] = [sig.method_name, ins, outs]
        graphs.append([list(mg.meta_info_def.tags), mg.meta_info_def.tensorflow_version, sigs])
    out[path] = graphs
print(json.dumps(out))
'''


def _ours(path: Path) -> list[object]:
    from tfms.modelcheck.dtypes import NUMBERS

    info = parse_saved_model(path.read_bytes())
    return [[list(m.tags), m.tensorflow_version,
             {k: [s.method_name, {a: [t.name, NUMBERS[t.dtype], None if t.shape is None else list(t.shape)]
                                  for a, t in s.inputs.items()},
                  {a: [t.name, NUMBERS[t.dtype], None if t.shape is None else list(t.shape)]
                   for a, t in s.outputs.items()}] for k, s in m.signatures.items()}]
            for m in info.meta_graphs]


def test_descriptors_match_tensorflows_protos(models: Path) -> None:
    """Field numbers and types are right: every model decodes to what tensorflow itself reads."""
    paths = [HALF_PLUS_TWO / "1" / "saved_model.pb", *(models / n / "1" / "saved_model.pb"
                                                       for n in ("strings", "multi", "examples", "train"))]
    out = subprocess.run([sys.executable, "-c", TF_DUMP, *map(str, paths)], capture_output=True, text=True,
                         check=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    for path in paths:
        assert _ours(path) == theirs[str(path)], path


def test_signature_kinds_and_specs(models: Path) -> None:
    info = parse_saved_model((models / "examples" / "1" / "saved_model.pb").read_bytes())
    graph = info.meta_graph(["serve"])
    assert graph is not None
    kinds = {k: s.kind for k, s in graph.signatures.items()}
    assert kinds == {"serving_default": "classify", "classify_scores_only": "classify", "regress": "regress",
                     "predict": "predict"}
    scores = graph.signatures["serving_default"].outputs["scores"]
    assert (scores.dtype, scores.shape, scores.shape_text()) == ("DT_FLOAT", (-1, 2), "(?, 2)")
    assert info.meta_graph(["train"]) is None


@pytest.mark.parametrize("data", [b"not a protobuf", b"", b"\x0a\x05hello"])
def test_garbage_is_not_a_saved_model(data: bytes) -> None:
    with pytest.raises(SavedModelError, match="not a SavedModel protobuf"):
        parse_saved_model(data)


def test_text_format_saved_model() -> None:
    text = b'''saved_model_schema_version: 1
meta_graphs { meta_info_def { tags: "serve" tensorflow_version: "2.1.0" }
  graph_def { node { name: "x" op: "Placeholder" } }
  signature_def { key: "serving_default" value {
    inputs { key: "x" value { name: "x:0" dtype: DT_FLOAT tensor_shape { dim { size: -1 } } } }
    outputs { key: "y" value { name: "y:0" dtype: DT_STRING tensor_shape { unknown_rank: true } } }
    method_name: "tensorflow/serving/predict" } } }
'''
    info = parse_saved_model(text, text=True)
    sig = info.meta_graphs[0].signatures["serving_default"]
    assert (sig.inputs["x"].dtype, sig.inputs["x"].shape) == ("DT_FLOAT", (-1,))
    assert (sig.outputs["y"].dtype, sig.outputs["y"].shape) == ("DT_STRING", None)


def test_warmup_file_written_by_tensorflow_is_read(models: Path) -> None:
    info = read_warmup((models / "warmup" / "1" / "assets.extra" / "tf_serving_warmup_requests").read_bytes())
    assert (info.records, info.kinds) == (3, {"predict_log": 3})


def test_warmup_rules() -> None:
    predict = b"\x32\x00"  # PredictionLog{predict_log: {}}
    assert read_warmup(tfrecord(predict) * 2).records == 2
    with pytest.raises(WarmupError, match=r"exceeds the maximum \(1000\)"):
        read_warmup(tfrecord(predict) * (MAX_RECORDS + 1))
    with pytest.raises(WarmupError, match="holds no request"):
        read_warmup(tfrecord(b""))
    with pytest.raises(WarmupError, match="corrupted TFRecord length"):
        read_warmup(b"\x01" * 20)
    with pytest.raises(WarmupError, match="corrupted TFRecord data"):
        read_warmup(tfrecord(predict)[:-1] + b"\x00")
    with pytest.raises(WarmupError, match="truncated"):
        read_warmup(tfrecord(predict)[:-3])
