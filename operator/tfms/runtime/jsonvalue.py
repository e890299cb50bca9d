"""JSON parsing and error-message rendering with rapidjson's vocabulary.

TF Serving parses requests with rapidjson (NaN/Infinity allowed) and quotes offending
values in errors with rapidjson's PrettyWriter, so clients see e.g.
`JSON Parse error: Invalid value. at offset: 0`. Python's json module does the parsing;
this module translates its errors and prints values the way rapidjson would.
"""

from __future__ import annotations

import decimal
import json
import struct
from typing import Any

from tfms.runtime.errors import ServingError, invalid
from tfms.runtime.floatfmt import format_float32, format_float64

_F32 = struct.Struct("f")
_FLT_MAX = 3.4028234e38

_PY_TO_RAPIDJSON = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Extra data": "The document root must not be followed by other values.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}


def _open_container(text: str, pos: int) -> str:
    """The innermost bracket open at `pos` ('{' or '['), skipping string contents."""
    stack: list[str] = []
    in_str = escaped = False
    for ch in text[:pos]:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def parse_error(exc: json.JSONDecodeError) -> ServingError:
    """Translate a Python JSON error into TF Serving's message."""
    if not exc.doc.strip():
        what = "The document is empty."
    elif exc.msg == "Expecting ',' delimiter":
        if _open_container(exc.doc, exc.pos) == "{":
            what = "Missing a comma or '}' after an object member."
        else:
            what = "Missing a comma or ']' after an array element."
    else:
        what = _PY_TO_RAPIDJSON.get(exc.msg, "Unspecific syntax error.")
    pos = exc.pos
    if exc.msg.startswith("Unterminated string"):
        pos = len(exc.doc)
    return invalid(f"JSON Parse error: {what} at offset: {pos}")


def parse_json(body: bytes) -> Any:
    """Parse a request body; any failure is TF Serving's INVALID_ARGUMENT."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise parse_error(exc) from None
    except UnicodeDecodeError as exc:
        raise invalid(f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}") from None


def json_type_string(val: Any) -> str:
    """rapidjson's type names, as used in `... Type: Number is not of expected type`."""
    if val is None:
        return "Null"
    if val is True:
        return "True"
    if val is False:
        return "False"
    if isinstance(val, dict):
        return "Object"
    if isinstance(val, list):
        return "Array"
    if isinstance(val, str):
        return "String"
    return "Number"


def _grisu(v: float) -> str:
    """rapidjson `Writer::Double` (shortest digits, its own exponent layout)."""
    if v != v or v in (float("inf"), float("-inf")):
        return format_float64(v)
    sign, digits, exp = decimal.Decimal(repr(v)).as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    exp += len(digits) - len(ds)
    neg = "-" if sign else ""
    if ds == "0":
        return neg + "0.0"
    length, kk = len(ds), len(ds) + exp
    if exp >= 0 and kk <= 21:
        return neg + ds + "0" * exp + ".0"
    if 0 < kk <= 21:
        return neg + ds[:kk] + "." + ds[kk:]
    if -6 < kk <= 0:
        return neg + "0." + "0" * (-kk) + ds
    e = kk - 1
    mant = ds if length == 1 else ds[0] + "." + ds[1:]
    return f"{neg}{mant}e{e}"


def _pretty(val: Any, indent: str) -> str:
    if isinstance(val, dict):
        if not val:
            return "{}"
        inner = indent + "    "
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_pretty(v, inner)}" for k, v in val.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(val, list):
        if not val:
            return "[]"
        inner = indent + "    "
        return "[\n" + ",\n".join(inner + _pretty(v, inner) for v in val) + "\n" + indent + "]"
    if val is True:
        return "true"
    if val is False:
        return "false"
    if val is None:
        return "null"
    if isinstance(val, float):
        return _grisu(val)
    if isinstance(val, int):
        return str(val)
    return json.dumps(val, ensure_ascii=False)


def value_to_string(val: Any) -> str:
    """`JsonValueToString`: a top-level double in float range is narrowed to float
    (rapidjson's `IsFloat` is a range check) and goes through `WriteDecimal`."""
    if isinstance(val, float):
        if -_FLT_MAX <= val <= _FLT_MAX:
            return format_float32(_F32.unpack(_F32.pack(val))[0])
        return format_float64(val)
    return _pretty(val, "")
