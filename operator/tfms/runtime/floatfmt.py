"""TF Serving's float formatting (`WriteDecimal` in json_tensor.cc).

`%.6g`, falling back to `%.9g` (float) / `%.17g` (double) when the short form does not
round-trip, then `.0` for integral-looking tokens; NaN/Infinity as bare tokens. Clients
compare responses byte for byte, so neither `repr` nor shortest-round-trip will do.
Arrays are formatted with one C-level `%` call per precision and numpy masks, which is
several times faster than a per-element Python function.
"""

from __future__ import annotations

import math
import struct

import numpy as np

_F32 = struct.Struct("f")
_SMALL = 16  # below this the per-element path beats the numpy set-up cost


def _nonfinite(v: float) -> str:
    if v != v:
        return "NaN"
    return "Infinity" if v > 0 else "-Infinity"


def _dot(s: str) -> str:
    return s if ("." in s or "e" in s) else s + ".0"


def format_float32(v: float) -> str:
    """One float32 value (given as a Python float) the way TF Serving writes it."""
    if not math.isfinite(v):
        return _nonfinite(v)
    s = f"{v:.6g}"
    try:
        same = _F32.unpack(_F32.pack(float(s)))[0] == v
    except OverflowError:
        same = False
    if not same:
        s = f"{v:.9g}"
    return _dot(s)


def format_float64(v: float) -> str:
    """One double value the way TF Serving writes it."""
    if not math.isfinite(v):
        return _nonfinite(v)
    s = f"{v:.6g}"
    if float(s) != v:
        s = f"{v:.17g}"
    return _dot(s)


def _batch(fmt: str, values: list[float]) -> list[str]:
    return (((fmt + ",") * len(values))[:-1] % tuple(values)).split(",")


def float_tokens(arr: np.ndarray) -> list[str]:
    """Formatted tokens of a float32/float64 array, flattened in C order."""
    flat = arr.ravel()
    values: list[float] = flat.tolist()
    is32 = flat.dtype == np.float32
    if len(values) < _SMALL:
        one = format_float32 if is32 else format_float64
        return [one(v) for v in values]
    long_fmt, long_limit = ("%.9g", 1e9) if is32 else ("%.17g", 1e17)
    tokens = _batch("%.6g", values)
    parsed = np.array(tokens, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(flat)
        same = (parsed.astype(np.float32) == flat) if is32 else (parsed == flat)
        redo = np.flatnonzero(~same & finite)
        whole = np.flatnonzero(same & (parsed == np.floor(parsed)) & (np.abs(parsed) < 1e6))
    for i in whole.tolist():
        tokens[i] += ".0"
    if len(redo):
        redo_values = flat[redo]
        redo_list: list[int] = redo.tolist()
        for i, tok in zip(redo_list, _batch(long_fmt, redo_values.tolist()), strict=True):
            tokens[i] = tok
        integral = (redo_values == np.floor(redo_values)) & (np.abs(redo_values) < long_limit)
        for j in np.flatnonzero(integral).tolist():
            tokens[redo_list[j]] += ".0"
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            tokens[i] = _nonfinite(values[i])
    return tokens
