"""TensorFlow `DataType` numbers and names (tensorflow/core/framework/types.proto)."""

from __future__ import annotations

from typing import Final

NAMES: Final[dict[int, str]] = {
    0: "DT_INVALID", 1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16", 6: "DT_INT8",
    7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL", 11: "DT_QINT8", 12: "DT_QUINT8",
    13: "DT_QINT32", 14: "DT_BFLOAT16", 15: "DT_QINT16", 16: "DT_QUINT16", 17: "DT_UINT16", 18: "DT_COMPLEX128",
    19: "DT_HALF", 20: "DT_RESOURCE", 21: "DT_VARIANT", 22: "DT_UINT32", 23: "DT_UINT64",
}
NUMBERS: Final[dict[str, int]] = {v: k for k, v in NAMES.items()}

# What TF Serving's REST JSON codec accepts (json_tensor.cc AddValueToTensor); anything else
# is answered with Unimplemented.
FLOATS: Final = frozenset({"DT_FLOAT", "DT_DOUBLE"})
INTEGERS: Final = frozenset({"DT_INT8", "DT_INT16", "DT_INT32", "DT_UINT8", "DT_INT64", "DT_UINT32", "DT_UINT64"})
JSON_DTYPES: Final = FLOATS | INTEGERS | {"DT_BOOL", "DT_STRING"}


def name(number: int) -> str:
    """`DT_FLOAT` for 1; reference types (`DT_FLOAT_REF` = 101) and unknown numbers too."""
    if number in NAMES:
        return NAMES[number]
    if number > 100 and number - 100 in NAMES:
        return NAMES[number - 100] + "_REF"
    return f"DT_UNKNOWN_{number}"
