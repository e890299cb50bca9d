"""Warmup records (`assets.extra/tf_serving_warmup_requests`) as TF Serving replays them.

The file is a TFRecord file of `tensorflow.serving.PredictionLog` messages; at most 1000
records are allowed and every record must parse, or the version fails to load
(`saved_model_warmup_util.cc`). The message types are rebuilt from descriptors (field
numbers of `prediction_log.proto`, `predict.proto`, `model.proto`) with the request's
TensorProtos kept as bytes for the loader to decode with tensorflow.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2
from google.protobuf.message import DecodeError

from tfms.runtime.config import add_field

_F = descriptor_pb2.FieldDescriptorProto
_PKG = "tensorflow.serving"
MAX_RECORDS = 1000  # WarmupConsts::kMaxNumRecords


class WarmupError(ValueError):
    """The warmup file cannot be replayed; the version must not load."""


def _pool() -> descriptor_pool.DescriptorPool:
    fd = descriptor_pb2.FileDescriptorProto(name="tfms/runtime/prediction_log_subset.proto", package=_PKG,
                                            syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    spec = fd.message_type.add(name="ModelSpec")
    add_field(spec, "name", 1, _F.TYPE_STRING)
    add_field(spec, "version", 2, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add_field(spec, "signature_name", 3, _F.TYPE_STRING)
    add_field(spec, "version_label", 4, _F.TYPE_STRING)
    request = fd.message_type.add(name="PredictRequest")
    entry = request.nested_type.add(name="InputsEntry")
    entry.options.map_entry = True
    add_field(entry, "key", 1, _F.TYPE_STRING)
    add_field(entry, "value", 2, _F.TYPE_BYTES)  # a serialized tensorflow.TensorProto
    add_field(request, "model_spec", 1, _F.TYPE_MESSAGE, f".{_PKG}.ModelSpec")
    add_field(request, "inputs", 2, _F.TYPE_MESSAGE, f".{_PKG}.PredictRequest.InputsEntry", repeated=True)
    add_field(request, "output_filter", 3, _F.TYPE_STRING, repeated=True)
    predict_log = fd.message_type.add(name="PredictLog")
    add_field(predict_log, "request", 1, _F.TYPE_MESSAGE, f".{_PKG}.PredictRequest")
    log = fd.message_type.add(name="PredictionLog")
    log.oneof_decl.add(name="log_type")
    add_field(log, "log_metadata", 1, _F.TYPE_BYTES)
    for name, number in (("classify_log", 2), ("regress_log", 3), ("multi_inference_log", 4),
                         ("session_run_log", 5)):
        add_field(log, name, number, _F.TYPE_BYTES, oneof=0)
    add_field(log, "predict_log", 6, _F.TYPE_MESSAGE, f".{_PKG}.PredictLog", oneof=0)
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    pool.Add(fd)
    return pool


_POOL = _pool()
PredictionLog: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PKG}.PredictionLog"))


def tfrecords(data: bytes) -> Iterator[bytes]:
    """The payloads of a TFRecord file (framing checked; CRCs are left to the writer's word)."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise WarmupError("Failed to read warmup record: truncated record header")
        (length,) = struct.unpack_from("<Q", data, pos)
        end = pos + 12 + length
        if end + 4 > len(data):
            raise WarmupError("Failed to read warmup record: truncated record")
        yield data[pos + 12:end]
        pos = end + 4


@dataclass(frozen=True)
class WarmupRequest:
    kind: str  # predict_log, classify_log, ...
    signature_name: str = ""
    inputs: dict[str, bytes] | None = None  # alias -> serialized TensorProto (predict only)


def read_warmup(data: bytes) -> list[WarmupRequest]:
    out: list[WarmupRequest] = []
    for payload in tfrecords(data):
        if len(out) >= MAX_RECORDS:
            raise WarmupError(f"Number of warmup records exceeds the maximum ({MAX_RECORDS})")
        log = PredictionLog()
        try:
            log.ParseFromString(payload)
        except DecodeError:
            raise WarmupError("Failed to parse warmup record") from None
        kind = log.WhichOneof("log_type")
        if kind is None:
            raise WarmupError("Unsupported log_type for warmup: 0")
        if kind == "predict_log":
            request = log.predict_log.request
            out.append(WarmupRequest(kind, request.model_spec.signature_name, dict(request.inputs)))
        else:
            out.append(WarmupRequest(kind))
    return out
