"""REST request bodies from a signature: a sample to show users, and a checker for bodies.

TF Serving takes exactly one of `instances` (row) or `inputs` (columnar) (B-028), and binary
data only as `{"b64": ...}` where a DT_STRING value goes; numeric tensors are plain JSON
numbers, never base64 of their bytes (B-030). A smoke request tfms builds, or a user pastes
into `tfms inspect-model --check-request`, goes through the same rules before it is sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from tfms.modelcheck import dtypes
from tfms.modelcheck.savedmodel import Signature, TensorSpec

_BASE64_TEXT = re.compile(r"^[A-Za-z0-9+/_-]{16,}={0,2}$")


def _zero(dtype: str) -> Any:
    if dtype in dtypes.FLOATS:
        return 0.0
    if dtype in dtypes.INTEGERS:
        return 0
    if dtype == "DT_BOOL":
        return False
    if dtype == "DT_STRING":
        return {"b64": ""}  # valid for any string input, binary or text
    return None


def _filled(shape: tuple[int, ...], dtype: str) -> Any:
    if not shape:
        return _zero(dtype)
    return [_filled(shape[1:], dtype) for _ in range(max(shape[0], 1))]


def sample_instance(spec: TensorSpec) -> Any:
    """One row's value for an input: its shape without the batch dimension, unknown sizes as 1."""
    if spec.shape is None or not spec.shape:
        return _zero(spec.dtype)
    return _filled(spec.shape[1:], spec.dtype)


def sample_request(sig: Signature, signature_name: str = "") -> dict[str, Any]:
    """A valid one-row request in row format (the response comes back under `predictions`)."""
    doc: dict[str, Any] = {"signature_name": signature_name} if signature_name else {}
    if sig.kind in ("classify", "regress"):
        doc["examples"] = [{}]
        return doc
    names = sorted(sig.inputs)
    if len(names) == 1:
        doc["instances"] = [sample_instance(sig.inputs[names[0]])]
    else:
        doc["instances"] = [{n: sample_instance(sig.inputs[n]) for n in names}]
    return doc


@dataclass(frozen=True)
class RequestProblem:
    path: str  # where in the body, e.g. instances[0].image
    message: str
    severity: str = "error"  # error: TF Serving answers 400; warning: accepted but probably wrong

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaves(value: Any, path: str, spec: TensorSpec, out: list[RequestProblem]) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _leaves(item, f"{path}[{i}]", spec, out)
        return
    dtype = spec.dtype
    if _is_b64(value):
        if dtype != "DT_STRING":
            out.append(RequestProblem(path, f"{{\"b64\": ...}} is only for DT_STRING inputs; this input is {dtype}, "
                                      "so send plain JSON numbers (never base64 of an array's bytes)"))
            return
        try:
            base64.b64decode(value["b64"] + "=" * (-len(value["b64"]) % 4), validate=True)
        except (binascii.Error, ValueError):
            out.append(RequestProblem(path, "Unable to base64 decode"))
        return
    if dtype not in dtypes.JSON_DTYPES:
        out.append(RequestProblem(path, f"TF Serving's REST API cannot carry {dtype} values (Unimplemented)"))
    elif dtype == "DT_STRING":
        if not isinstance(value, str):
            out.append(RequestProblem(path, f"expected a string or {{\"b64\": ...}} for DT_STRING, got {value!r}"))
        elif _BASE64_TEXT.match(value) and len(value) % 4 == 0:
            out.append(RequestProblem(path, "this string looks like base64 text; binary data must be wrapped as "
                                      "{\"b64\": \"...\"} or the model receives the base64 characters themselves",
                                      "warning"))
    elif dtype == "DT_BOOL":
        if not isinstance(value, bool):
            out.append(RequestProblem(path, f"expected true/false for DT_BOOL, got {value!r}"))
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        out.append(RequestProblem(path, f"expected a JSON number for {dtype}, got {value!r}"))
    elif dtype in dtypes.INTEGERS and isinstance(value, float):
        out.append(RequestProblem(path, f"expected an integer for {dtype}, got {value!r}"))


def check_request(doc: Any, sig: Signature) -> list[RequestProblem]:
    """What TF Serving would refuse in a `:predict` body (and likely mistakes it would accept)."""
    out: list[RequestProblem] = []
    if not isinstance(doc, dict):
        return [RequestProblem("$", "the body must be a JSON object")]
    if "signature_name" in doc and not isinstance(doc["signature_name"], str):
        out.append(RequestProblem("signature_name", "'signature_name' key must be a string value."))
    has_rows, has_cols = "instances" in doc, "inputs" in doc
    if has_rows and has_cols:
        return [*out, RequestProblem("$", "expecting only one of 'inputs' or 'instances' keys to exist")]
    if not has_rows and not has_cols:
        return [*out, RequestProblem("$", "Missing 'inputs' or 'instances' key")]
    names = sorted(sig.inputs)
    if has_rows:
        items = doc["instances"]
        if not isinstance(items, list):
            return [*out, RequestProblem("instances", "Excepting 'instances' to be an list/array")]
        if not items:
            return [*out, RequestProblem("instances", "No values in 'instances' array")]
        for i, item in enumerate(items):
            where = f"instances[{i}]"
            if len(names) > 1:
                if not isinstance(item, dict) or _is_b64(item):
                    out.append(RequestProblem(where, "instances is a plain list, but expecting list of objects as "
                                              f"multiple input tensors required: {','.join(names)}"))
                    continue
                if sorted(item) != names:
                    out.append(RequestProblem(where, f"keys must be equal to: {','.join(names)}"))
                for key in sorted(set(item) & set(names)):
                    _leaves(item[key], f"{where}.{key}", sig.inputs[key], out)
            else:
                value = item
                if isinstance(item, dict) and not _is_b64(item):
                    if sorted(item) != names:
                        out.append(RequestProblem(where, f"keys must be equal to: {','.join(names)}"))
                        continue
                    value = item[names[0]]
                _leaves(value, where, sig.inputs[names[0]], out)
        return out
    value = doc["inputs"]
    if isinstance(value, dict) and not _is_b64(value):
        for name in names:
            if name not in value:
                out.append(RequestProblem("inputs", f"Missing named input: {name} in 'inputs' object."))
            else:
                _leaves(value[name], f"inputs.{name}", sig.inputs[name], out)
    elif len(names) > 1:
        out.append(RequestProblem("inputs", "inputs is a plain value/list, but expecting an object as multiple "
                                  f"input tensors required: {','.join(names)}"))
    else:
        _leaves(value, "inputs", sig.inputs[names[0]], out)
    return out
