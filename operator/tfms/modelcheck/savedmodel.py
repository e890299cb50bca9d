"""`saved_model.pb` (or `.pbtxt`) -> tags, TF version and signatures, without tensorflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from tfms.modelcheck import dtypes
from tfms.modelcheck.protos import POOL, message_class

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


class SavedModelError(ValueError):
    """The file is not a SavedModel protobuf."""


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: graph tensor, dtype name and shape (None: unknown rank; -1: any)."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None
    encoding: str = "name"  # name (dense) | coo_sparse | composite_tensor

    @property
    def dense(self) -> bool:
        return self.encoding == "name"

    def shape_text(self) -> str:
        if self.shape is None:
            return "<unknown rank>"
        dims = ", ".join("?" if d < 0 else str(d) for d in self.shape)
        return f"({dims},)" if len(self.shape) == 1 else f"({dims})"

    def as_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": None if self.shape is None else list(self.shape),
                "tensor": self.name, **({} if self.dense else {"encoding": self.encoding})}


@dataclass(frozen=True)
class Signature:
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]

    @property
    def kind(self) -> str:
        """Which REST verb fits: classify/regress need TF Serving's classifier/regressor shape
        (one DT_STRING input named `inputs`), everything else is predict."""
        if list(self.inputs) == ["inputs"] and self.inputs["inputs"].dtype == "DT_STRING":
            if self.method_name == CLASSIFY_METHOD or {"classes", "scores"} & set(self.outputs):
                return "classify"
            if self.method_name == REGRESS_METHOD or "outputs" in self.outputs:
                return "regress"
        return "predict"

    def as_json(self) -> dict[str, Any]:
        return {"method": self.method_name, "verb": self.kind,
                "inputs": {k: v.as_json() for k, v in sorted(self.inputs.items())},
                "outputs": {k: v.as_json() for k, v in sorted(self.outputs.items())}}


@dataclass(frozen=True)
class MetaGraph:
    tags: tuple[str, ...]
    tensorflow_version: str
    signatures: dict[str, Signature] = field(default_factory=dict)


@dataclass(frozen=True)
class SavedModelInfo:
    schema_version: int
    meta_graphs: tuple[MetaGraph, ...]

    def meta_graph(self, tags: tuple[str, ...] | list[str]) -> MetaGraph | None:
        """The MetaGraphDef whose tag set equals `tags` (TF Serving's `--saved_model_tags` match)."""
        wanted = set(tags)
        return next((m for m in self.meta_graphs if set(m.tags) == wanted), None)


def _tensor(info: Any) -> TensorSpec:
    encoding = info.WhichOneof("encoding") or "name"
    shape: tuple[int, ...] | None
    if not info.HasField("tensor_shape") or info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(int(d.size) for d in info.tensor_shape.dim)
    return TensorSpec(info.name if encoding == "name" else "", dtypes.name(int(info.dtype)), shape, encoding)


def _signature(sig: Any) -> Signature:
    return Signature(
        method_name=sig.method_name,
        inputs={k: _tensor(v) for k, v in sorted(sig.inputs.items())},
        outputs={k: _tensor(v) for k, v in sorted(sig.outputs.items())},
    )


def parse_saved_model(data: bytes, text: bool = False) -> SavedModelInfo:
    """Decode `saved_model.pb` (binary) or `saved_model.pbtxt` (text format)."""
    msg: Any = message_class("SavedModel")()
    try:
        if text:
            text_format.Parse(data.decode("utf-8"), msg, allow_unknown_field=True, descriptor_pool=POOL)
        else:
            msg.ParseFromString(data)
    except (DecodeError, text_format.ParseError, UnicodeDecodeError, RuntimeError) as exc:
        raise SavedModelError(f"not a SavedModel protobuf: {exc or type(exc).__name__}") from None
    if not msg.meta_graphs:
        raise SavedModelError("not a SavedModel protobuf: it holds no MetaGraphDef")
    graphs = tuple(
        MetaGraph(tuple(m.meta_info_def.tags), m.meta_info_def.tensorflow_version,
                  {k: _signature(v) for k, v in sorted(m.signature_def.items())})
        for m in msg.meta_graphs
    )
    return SavedModelInfo(int(msg.saved_model_schema_version), graphs)
