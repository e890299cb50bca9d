"""`:predict` request JSON -> input arrays, with TF Serving's rules and messages.

The exact (slow) path mirrors json_tensor.cc element by element so every error text
matches. A numpy fast path handles the common well-formed numeric request and falls back
to the exact path whenever it cannot prove the result would be identical.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from tfms.runtime import dtypes as dt
from tfms.runtime.errors import Code, ServingError, invalid
from tfms.runtime.jsonvalue import json_type_string, value_to_string
from tfms.runtime.signature import TensorInfo

Format = Literal["row", "columnar"]

_FLT_MAX = float(np.finfo(np.float32).max)
_DBL_MAX = float(np.finfo(np.float64).max)
_MAX_INT = {dt.DT_FLOAT: (1 << 24) - 1, dt.DT_DOUBLE: (1 << 53) - 1}
_INT_RANGE = {
    dt.DT_INT8: (-(2**31), 2**31 - 1),  # rapidjson IsInt(): the JSON layer checks int32 only
    dt.DT_INT16: (-(2**31), 2**31 - 1),
    dt.DT_INT32: (-(2**31), 2**31 - 1),
    dt.DT_UINT8: (-(2**31), 2**31 - 1),
    dt.DT_INT64: (-(2**63), 2**63 - 1),
    dt.DT_UINT32: (0, 2**32 - 1),
    dt.DT_UINT64: (0, 2**64 - 1),
}


def _format_error(doc: Any, *parts: str) -> ServingError:
    return invalid("JSON Value: " + value_to_string(doc) + " " + "".join(parts))


def _type_error(val: Any, dtype: int) -> ServingError:
    return invalid(
        f"JSON Value: {value_to_string(val)} Type: {json_type_string(val)} "
        f"is not of expected type: {dt.dtype(dtype).type_string}"
    )


def is_b64_object(val: Any) -> bool:
    return isinstance(val, dict) and len(val) == 1 and isinstance(val.get("b64"), str)


def _is_number(val: Any) -> bool:
    return isinstance(val, (int, float)) and not isinstance(val, bool)


def _lossless(val: int | float, dtype: int) -> bool:
    """`IsLosslessDecimal`: integers must fit the mantissa, doubles the range."""
    if isinstance(val, int) and -(2**63) <= val < 2**64:
        return abs(val) <= _MAX_INT[dtype]
    fval = float(val)
    if fval != fval or fval in (float("inf"), float("-inf")):
        return True
    limit = _FLT_MAX if dtype == dt.DT_FLOAT else _DBL_MAX
    return -limit <= fval <= limit


def _value(val: Any, dtype: int) -> Any:
    """`AddValueToTensor`: one JSON scalar -> one Python value of the tensor."""
    if dtype in (dt.DT_FLOAT, dt.DT_DOUBLE):
        if not _is_number(val):
            raise _type_error(val, dtype)
        if not _lossless(val, dtype):
            target = "float" if dtype == dt.DT_FLOAT else "double"
            raise invalid(f"Cannot convert JSON value: {value_to_string(val)} to {target} without loss of precision.")
        return float(val)
    if dtype in _INT_RANGE:
        lo, hi = _INT_RANGE[dtype]
        if not (isinstance(val, int) and not isinstance(val, bool) and lo <= val <= hi):
            raise _type_error(val, dtype)
        return val
    if dtype == dt.DT_STRING:
        if not isinstance(val, str):
            raise _type_error(val, dtype)
        return val.encode("utf-8", "surrogatepass")
    if dtype == dt.DT_BOOL:
        if not isinstance(val, bool):
            raise _type_error(val, dtype)
        return val
    raise ServingError(
        Code.UNIMPLEMENTED,
        f"Conversion of JSON Value: {value_to_string(val)} to type: {dt.dtype(dtype).type_string}",
    )


def _decode_b64(val: Any) -> bytes:
    if not is_b64_object(val):
        raise invalid(f"JSON Value: {value_to_string(val)} not formatted correctly for base64 data")
    text: str = val["b64"]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Unable to base64 decode") from None


def dense_shape(val: Any) -> list[int]:
    """`GetDenseTensorShape`: follow the first element down."""
    shape: list[int] = []
    while isinstance(val, list):
        shape.append(len(val))
        if not val:
            break
        val = val[0]
    return shape


def _fill(val: Any, level: int, shape: list[int], dtype: int, out: list[Any]) -> None:
    """`FillTensorProto`: validate the nesting against `shape` and collect leaves."""
    rank = len(shape)
    if not isinstance(val, list):
        if level != rank:
            raise invalid(
                f"JSON Value: {value_to_string(val)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        if isinstance(val, dict):
            if dtype != dt.DT_STRING:
                raise _type_error(val, dtype)
            out.append(_decode_b64(val))
        else:
            out.append(_value(val, dtype))
        return
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(val) != shape[level]:
        raise invalid(
            f"Encountered list at unexpected size: {len(val)} at level: {level} expected size: {shape[level]}"
        )
    for item in val:
        _fill(item, level + 1, shape, dtype, out)


def _to_array(values: list[Any], shape: list[int], dtype: int) -> np.ndarray:
    np_type = dt.dtype(dtype).numpy
    if dtype == dt.DT_STRING:
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    if dtype in (dt.DT_INT8, dt.DT_INT16, dt.DT_UINT8, dt.DT_INT32):
        return np.array(values, dtype=np.int64).astype(np_type).reshape(shape)  # wraps like static_cast
    return np.array(values, dtype=np_type).reshape(shape)


def _exact_tensor(val: Any, dtype: int) -> np.ndarray:
    shape = dense_shape(val)
    values: list[Any] = []
    _fill(val, 0, shape, dtype, values)
    return _to_array(values, shape, dtype)


def _fast_tensor(val: Any, dtype: int, maybe_bools: bool) -> np.ndarray | None:
    """numpy conversion of a well-formed numeric value, or None to use the exact path."""
    np_type = dt.dtype(dtype).numpy
    if np_type is None or dtype == dt.DT_STRING:
        return None
    is_bool = dtype == dt.DT_BOOL
    if maybe_bools and not is_bool:
        return None
    try:
        arr = np.array(val)
    except (ValueError, TypeError, OverflowError):
        return None
    kind = arr.dtype.kind
    if is_bool:
        return arr if kind == "b" else None
    if arr.size == 0:
        return None
    if dtype in (dt.DT_FLOAT, dt.DT_DOUBLE):
        if kind == "i":
            if int(np.abs(arr).max()) > _MAX_INT[dtype]:
                return None
        elif kind == "f":
            with np.errstate(invalid="ignore"):
                finite = arr[np.isfinite(arr)]
            if finite.size and float(np.abs(finite).max()) > (1 << 24 if dtype == dt.DT_FLOAT else 1 << 53):
                return None  # might hide large JSON integers; let the exact path decide
        else:
            return None
        return arr.astype(np_type, copy=False)
    if kind != "i":
        return None
    lo, hi = _INT_RANGE[dtype]
    if int(arr.min()) < lo or int(arr.max()) > hi:
        return None
    return arr.astype(np_type)


def _tensor(val: Any, dtype: int, maybe_bools: bool) -> np.ndarray:
    fast = _fast_tensor(val, dtype, maybe_bools)
    return fast if fast is not None else _exact_tensor(val, dtype)


def _sorted_inputs(inputs: Mapping[str, TensorInfo]) -> list[str]:
    return sorted(inputs)


def _instances_exact(items: list[Any], inputs: Mapping[str, TensorInfo]) -> dict[str, np.ndarray]:
    """`FillTensorMapFromInstancesList`, element by element."""
    names = _sorted_inputs(inputs)
    if not isinstance(items[0], dict) and len(names) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )

    def element_is_object(v: Any) -> bool:
        return isinstance(v, dict) and not is_b64_object(v)

    objects = element_is_object(items[0])
    values: dict[str, list[Any]] = {}
    sizes: dict[str, int] = {}
    shapes: dict[str, list[int]] = {}

    def add_item(item: Any, name: str) -> None:
        if name not in inputs:
            raise invalid(f"JSON object: does not have named input: {name}")
        shape = dense_shape(item)
        collected: list[Any] = []
        _fill(item, 0, shape, inputs[name].dtype, collected)
        if name not in sizes:
            sizes[name], shapes[name] = len(collected), shape
        elif sizes[name] != len(collected):
            raise invalid(f"Expecting tensor size: {sizes[name]} but got: {len(collected)}")
        elif shapes[name] != shape:
            raise invalid(f"Expecting shape {_shape_str(shapes[name])} but got: {_shape_str(shape)}")
        values.setdefault(name, []).extend(collected)

    for index, elem in enumerate(items):
        if objects:
            if not element_is_object(elem):
                raise invalid(f"Expecting object but got list at item {index} of input list")
            for key, item in elem.items():
                try:
                    add_item(item, key)
                except ServingError as exc:
                    raise invalid(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {exc.to_string()}"
                    ) from None
            if set(elem) != set(names):
                raise invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{value_to_string(elem)} must only have keys: {','.join(names)}"
                )
        else:
            if element_is_object(elem):
                raise invalid(f"Expecting value/list but got object at item {index} of input list")
            try:
                add_item(elem, names[0])
            except ServingError as exc:
                raise invalid(
                    f"Failed to process element: {index} of 'instances' list. Error: {exc.to_string()}"
                ) from None
    return {
        name: _to_array(vals, [len(items), *shapes[name]], inputs[name].dtype) for name, vals in values.items()
    }


def _shape_str(shape: list[int]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _instances(items: list[Any], inputs: Mapping[str, TensorInfo], maybe_bools: bool) -> dict[str, np.ndarray]:
    names = _sorted_inputs(inputs)
    if len(names) == 1:
        if not isinstance(items[0], dict):
            fast = _fast_tensor(items, inputs[names[0]].dtype, maybe_bools)
            if fast is not None and fast.ndim >= 1:
                return {names[0]: fast}
        return _instances_exact(items, inputs)
    wanted = set(names)
    columns: dict[str, list[Any]] = {n: [] for n in names}
    for elem in items:
        if not isinstance(elem, dict) or is_b64_object(elem) or elem.keys() != wanted:
            return _instances_exact(items, inputs)
        for n in names:
            columns[n].append(elem[n])
    out: dict[str, np.ndarray] = {}
    for n in names:
        fast = _fast_tensor(columns[n], inputs[n].dtype, maybe_bools)
        if fast is None:
            return _instances_exact(items, inputs)
        out[n] = fast
    return out


def _columnar(val: Any, inputs: Mapping[str, TensorInfo], maybe_bools: bool) -> dict[str, np.ndarray]:
    """`FillTensorMapFromInputsMap`."""
    names = _sorted_inputs(inputs)
    if not isinstance(val, dict) or is_b64_object(val):
        if len(names) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        return {names[0]: _tensor(val, inputs[names[0]].dtype, maybe_bools)}
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in val:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        out[name] = _tensor(val[name], inputs[name].dtype, maybe_bools)
    return out


def decode_predict_inputs(
    doc: dict[str, Any], inputs: Mapping[str, TensorInfo], maybe_bools: bool = True
) -> tuple[dict[str, np.ndarray], Format]:
    """Tensors keyed by signature input alias, and the response format to use.

    `maybe_bools=False` promises that the body has no JSON `true`/`false` token, which
    lets numeric inputs skip the exact path (numpy would silently turn a bool into 1.0).
    """
    if "instances" in doc:
        if "inputs" in doc:
            raise _format_error(
                doc, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
            )
        items = doc["instances"]
        if not isinstance(items, list):
            raise _format_error(doc, "Excepting 'instances' to be an list/array")
        if not items:
            raise _format_error(doc, "No values in 'instances' array")
        return _instances(items, inputs, maybe_bools), "row"
    if "inputs" in doc:
        return _columnar(doc["inputs"], inputs, maybe_bools), "columnar"
    raise invalid("Missing 'inputs' or 'instances' key")
