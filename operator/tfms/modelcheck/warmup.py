"""`assets.extra/tf_serving_warmup_requests`: TFRecord framing and PredictionLog records.

TF Serving replays these at load time (`--enable_model_warmup`, on by default) and refuses
the version if the file holds more than 1000 records or a record it cannot parse
(`saved_model_warmup_util.cc`), so pre-flight checks both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import DecodeError

from tfms.modelcheck.protos import message_class

WARMUP_FILE: Final = "assets.extra/tf_serving_warmup_requests"
MAX_RECORDS: Final = 1000  # WarmupConsts::kMaxNumRecords
_MASK_DELTA: Final = 0xA282EAD8


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE: Final = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecord(payload: bytes) -> bytes:
    """One framed TFRecord (used by tests to build warmup files)."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc(length)) + payload + struct.pack("<I", masked_crc(payload))


class WarmupError(ValueError):
    pass


@dataclass(frozen=True)
class WarmupInfo:
    records: int
    kinds: dict[str, int]  # predict_log -> count, ...


def read_warmup(data: bytes, check_data_crc: bool = True) -> WarmupInfo:
    """Count and check the records; raises WarmupError with TF Serving's reason."""
    log_cls = message_class("PredictionLog")
    pos, count = 0, 0
    kinds: dict[str, int] = {}
    while pos < len(data):
        if len(data) - pos < 12:
            raise WarmupError(f"truncated TFRecord header at byte {pos}")
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked_crc(header) != length_crc:
            raise WarmupError(f"corrupted TFRecord length at byte {pos} (not a TFRecord file?)")
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(data):
            raise WarmupError(f"truncated TFRecord at byte {pos}: needs {length} bytes")
        payload = data[start:end]
        if check_data_crc and struct.unpack("<I", data[end:end + 4])[0] != masked_crc(payload):
            raise WarmupError(f"corrupted TFRecord data in record {count}")
        count += 1
        if count > MAX_RECORDS:
            raise WarmupError(f"Number of warmup records exceeds the maximum ({MAX_RECORDS})")
        log: Any = log_cls()
        try:
            log.ParseFromString(payload)
        except DecodeError:
            raise WarmupError(f"Failed to parse warmup record {count - 1} as a PredictionLog") from None
        kind = log.WhichOneof("log_type")
        if kind is None:
            raise WarmupError(f"warmup record {count - 1} holds no request (a PredictionLog with predict_log, "
                              "classify_log, regress_log or multi_inference_log)")
        kinds[kind] = kinds.get(kind, 0) + 1
        pos = end + 4
    return WarmupInfo(count, kinds)
