"""SignatureDefs as plain data, and their metadata JSON.

The loader converts TensorFlow's protos into these dataclasses once per version, so the
request path and the metadata endpoint never touch protobuf or tensorflow objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tfms.runtime.dtypes import dtype


@dataclass(frozen=True)
class TensorInfo:
    """A signature input or output (`tensorflow.TensorInfo`)."""

    name: str  # graph tensor name for dense tensors, e.g. "serving_default_x:0"
    dtype: int  # DataType enum value
    dims: tuple[tuple[int, str], ...] = ()
    unknown_rank: bool = False
    # Sparse/composite encodings keep their proto JSON; dense ones leave this empty.
    encoding_json: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Signature:
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    method_name: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)  # proto3 JSON of TensorProtos


def _tensor_info_json(info: TensorInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dtype": dtype(info.dtype).enum_name,
        "tensor_shape": {
            "dim": [{"size": str(size), "name": name} for size, name in info.dims],
            "unknown_rank": info.unknown_rank,
        },
    }
    if info.encoding_json:
        out.update(info.encoding_json)
    else:
        out["name"] = info.name
    return out


def signature_json(sig: Signature) -> dict[str, Any]:
    """proto3 JSON of a SignatureDef with field names preserved and defaults printed."""
    return {
        "inputs": {k: _tensor_info_json(v) for k, v in sig.inputs.items()},
        "outputs": {k: _tensor_info_json(v) for k, v in sig.outputs.items()},
        "method_name": sig.method_name,
        "defaults": sig.defaults,
    }


def metadata_response(name: str, version: int, signatures: dict[str, Signature]) -> bytes:
    """The body of `GET .../metadata`, laid out like TF Serving's `ToJsonString`, which
    glues two protobuf JSON documents together (hence the doubled `signature_def`)."""
    spec = json.dumps({"name": name, "signature_name": "", "version": str(version)}, indent=1)
    sig_map = {"signature_def": {k: signature_json(v) for k, v in signatures.items()}}
    sigs = json.dumps(sig_map, indent=1, ensure_ascii=False)
    text = '{\n"model_spec":' + spec + ',\n"metadata": {"signature_def": ' + sigs + "}\n}\n"
    return text.encode()
