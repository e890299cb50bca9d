"""Output arrays -> `:predict` response JSON (json_tensor.cc `MakeJsonFromTensors`).

Writes compact JSON directly from numpy buffers: floats through `floatfmt`, DT_STRING
outputs whose alias ends in `_bytes` as `{"b64": ...}`. Output keys are sorted so the
response is deterministic.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import numpy as np

from tfms.runtime import dtypes as dt
from tfms.runtime.errors import invalid
from tfms.runtime.floatfmt import float_tokens
from tfms.runtime.tensor_decode import Format


def _string_token(value: object) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return json.dumps(raw.decode("utf-8", "replace"), ensure_ascii=False)


def _b64_token(value: object) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return '{"b64":"' + base64.b64encode(raw).decode("ascii") + '"}'


def value_tokens(name: str, arr: np.ndarray, dtype_enum: int) -> list[str]:
    """Flat JSON tokens of a tensor (`AddSingleValueAndAdvance` for every element)."""
    kind = arr.dtype.kind
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return float_tokens(arr)
    flat = arr.ravel()
    if kind in "iu":
        return list(map(str, flat.tolist()))
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    if kind in "OSU":
        encode = _b64_token if name.endswith("_bytes") else _string_token
        return [encode(v) for v in flat.tolist()]
    type_string = dt.dtype(dtype_enum).type_string if dtype_enum else str(arr.dtype)
    raise invalid(f"Failed to write JSON value for tensor type: {type_string}")


def _empty_json(dims: tuple[int, ...]) -> str:
    if dims[0] == 0:
        return "[]"
    return "[" + ",".join([_empty_json(dims[1:])] * dims[0]) + "]"


def _group(tokens: list[str], dims: tuple[int, ...]) -> list[str]:
    """Wrap flat tokens into nested JSON arrays for `dims`; returns the dims[0] items."""
    if 0 in dims:
        return [] if dims[0] == 0 else [_empty_json(dims[1:])] * dims[0]
    parts = tokens
    for d in reversed(dims[1:]):
        parts = ["[" + ",".join(parts[i : i + d]) + "]" for i in range(0, len(parts), d)]
    return parts


def tensor_json(name: str, arr: np.ndarray, dtype_enum: int) -> str:
    """The whole tensor as (nested) JSON; a scalar is a bare value."""
    tokens = value_tokens(name, arr, dtype_enum)
    if arr.ndim == 0:
        return tokens[0]
    return "[" + ",".join(_group(tokens, arr.shape)) + "]"


def _row_items(name: str, arr: np.ndarray, dtype_enum: int) -> list[str]:
    return _group(value_tokens(name, arr, dtype_enum), arr.shape)


def encode_predict(outputs: Mapping[str, np.ndarray], dtypes: Mapping[str, int], fmt: Format) -> bytes:
    """The response body for a `:predict` in the request's format."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt == "columnar":
        if len(names) == 1:
            body = tensor_json(names[0], outputs[names[0]], dtypes.get(names[0], 0))
        else:
            body = "{" + ",".join(
                json.dumps(n) + ":" + tensor_json(n, outputs[n], dtypes.get(n, 0)) for n in names
            ) + "}"
        return ('{"outputs":' + body + "}").encode()
    batch = 0
    for n in names:
        arr = outputs[n]
        if arr.ndim == 0:
            raise invalid(f"Tensor name: {n} has no shape information ")
        size = arr.shape[0]
        if size < 1:
            raise invalid(f"Tensor name: {n} has invalid batch size: {size}")
        if batch and size != batch:
            raise invalid(f"Tensor name: {n} has inconsistent batch size: {size} expecting: {batch}")
        batch = size
    if len(names) == 1:
        rows = _row_items(names[0], outputs[names[0]], dtypes.get(names[0], 0))
        return ('{"predictions":[' + ",".join(rows) + "]}").encode()
    columns = [(json.dumps(n) + ":", _row_items(n, outputs[n], dtypes.get(n, 0))) for n in names]
    items = ["{" + ",".join(key + col[i] for key, col in columns) + "}" for i in range(batch)]
    return ('{"predictions":[' + ",".join(items) + "]}").encode()
