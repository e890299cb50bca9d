"""TensorFlow `DataType` enum values without importing tensorflow.

Metadata prints the enum name (`DT_FLOAT`), error messages print `DataTypeString`
(`float`), and the JSON codec needs the numpy type: one table keeps the three in step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    enum: int
    enum_name: str  # DT_FLOAT
    type_string: str  # float (tensorflow::DataTypeString)
    numpy: type[np.generic] | None  # None: no JSON conversion (Unimplemented)


_TABLE = [
    DType(0, "DT_INVALID", "INVALID", None),
    DType(1, "DT_FLOAT", "float", np.float32),
    DType(2, "DT_DOUBLE", "double", np.float64),
    DType(3, "DT_INT32", "int32", np.int32),
    DType(4, "DT_UINT8", "uint8", np.uint8),
    DType(5, "DT_INT16", "int16", np.int16),
    DType(6, "DT_INT8", "int8", np.int8),
    DType(7, "DT_STRING", "string", np.object_),
    DType(8, "DT_COMPLEX64", "complex64", None),
    DType(9, "DT_INT64", "int64", np.int64),
    DType(10, "DT_BOOL", "bool", np.bool_),
    DType(11, "DT_QINT8", "qint8", None),
    DType(12, "DT_QUINT8", "quint8", None),
    DType(13, "DT_QINT32", "qint32", None),
    DType(14, "DT_BFLOAT16", "bfloat16", None),
    DType(15, "DT_QINT16", "qint16", None),
    DType(16, "DT_QUINT16", "quint16", None),
    DType(17, "DT_UINT16", "uint16", None),
    DType(18, "DT_COMPLEX128", "complex128", None),
    DType(19, "DT_HALF", "half", None),
    DType(20, "DT_RESOURCE", "resource", None),
    DType(21, "DT_VARIANT", "variant", None),
    DType(22, "DT_UINT32", "uint32", np.uint32),
    DType(23, "DT_UINT64", "uint64", np.uint64),
]
_BY_ENUM = {d.enum: d for d in _TABLE}

DT_INVALID = 0
DT_FLOAT = 1
DT_DOUBLE = 2
DT_INT32 = 3
DT_UINT8 = 4
DT_INT16 = 5
DT_INT8 = 6
DT_STRING = 7
DT_INT64 = 9
DT_BOOL = 10
DT_UINT32 = 22
DT_UINT64 = 23


def dtype(enum: int) -> DType:
    """The entry for an enum value; unknown values (e.g. `_REF` types) get a placeholder."""
    found = _BY_ENUM.get(enum)
    if found is not None:
        return found
    base = _BY_ENUM.get(enum - 100) if enum > 100 else None
    if base is not None:  # reference types: DT_FLOAT_REF = 101
        return DType(enum, base.enum_name + "_REF", base.type_string + "_ref", None)
    return DType(enum, str(enum), f"unknown dtype enum ({enum})", None)
