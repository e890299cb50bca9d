"""The subset of TensorFlow's and TF Serving's protos that pre-flight reads.

Message types are rebuilt from descriptors with the field names and numbers of
`tensorflow/core/protobuf/{saved_model,meta_graph}.proto`,
`tensorflow/core/framework/tensor_shape.proto` and
`tensorflow_serving/apis/prediction_log.proto`, in a private descriptor pool (so they
coexist with the real generated classes when tensorflow is installed). Fields we do not
declare, such as the whole `GraphDef`, are skipped by the parser as unknown fields.
"""

from __future__ import annotations

from typing import Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from tfms.modelcheck.dtypes import NAMES

_F = descriptor_pb2.FieldDescriptorProto
PACKAGE: Final = "tfms.modelcheck"


def _field(msg: descriptor_pb2.DescriptorProto, name: str, number: int, ftype: int, type_name: str = "",
           repeated: bool = False, oneof: int | None = None) -> None:
    f = msg.field.add(name=name, number=number, type=ftype)
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        f.type_name = f".{PACKAGE}.{type_name}"
    if oneof is not None:
        f.oneof_index = oneof


def _map(msg: descriptor_pb2.DescriptorProto, name: str, number: int, value_type: str) -> None:
    entry_name = "".join(p.capitalize() for p in name.split("_")) + "Entry"
    entry = msg.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, value_type)
    _field(msg, name, number, _F.TYPE_MESSAGE, f"{msg.name}.{entry_name}", repeated=True)


def _saved_model_file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="tfms/modelcheck/saved_model_subset.proto", package=PACKAGE,
                                            syntax="proto3")
    data_type = fd.enum_type.add(name="DataType")
    for number, enum_name in sorted(NAMES.items()):
        data_type.value.add(name=enum_name, number=number)
        if number:
            data_type.value.add(name=enum_name + "_REF", number=number + 100)
    shape = fd.message_type.add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    _field(dim, "size", 1, _F.TYPE_INT64)
    _field(dim, "name", 2, _F.TYPE_STRING)
    _field(shape, "dim", 2, _F.TYPE_MESSAGE, "TensorShapeProto.Dim", repeated=True)
    _field(shape, "unknown_rank", 3, _F.TYPE_BOOL)

    info = fd.message_type.add(name="TensorInfo")
    info.oneof_decl.add(name="encoding")
    _field(info, "name", 1, _F.TYPE_STRING, oneof=0)
    # CooSparse and CompositeTensor: kept as raw bytes; pre-flight only needs to know they are there.
    _field(info, "coo_sparse", 4, _F.TYPE_BYTES, oneof=0)
    _field(info, "composite_tensor", 5, _F.TYPE_BYTES, oneof=0)
    _field(info, "dtype", 2, _F.TYPE_ENUM, "DataType")  # open enum: unknown numbers survive
    _field(info, "tensor_shape", 3, _F.TYPE_MESSAGE, "TensorShapeProto")

    sig = fd.message_type.add(name="SignatureDef")
    _map(sig, "inputs", 1, "TensorInfo")
    _map(sig, "outputs", 2, "TensorInfo")
    _field(sig, "method_name", 3, _F.TYPE_STRING)

    meta = fd.message_type.add(name="MetaGraphDef")
    meta_info = meta.nested_type.add(name="MetaInfoDef")
    _field(meta_info, "meta_graph_version", 1, _F.TYPE_STRING)
    _field(meta_info, "tags", 4, _F.TYPE_STRING, repeated=True)
    _field(meta_info, "tensorflow_version", 5, _F.TYPE_STRING)
    _field(meta_info, "tensorflow_git_version", 6, _F.TYPE_STRING)
    _field(meta, "meta_info_def", 1, _F.TYPE_MESSAGE, "MetaGraphDef.MetaInfoDef")
    _map(meta, "signature_def", 5, "SignatureDef")

    saved = fd.message_type.add(name="SavedModel")
    _field(saved, "saved_model_schema_version", 1, _F.TYPE_INT64)
    _field(saved, "meta_graphs", 2, _F.TYPE_MESSAGE, "MetaGraphDef", repeated=True)

    # tensorflow_serving/apis/prediction_log.proto: which request a warmup record holds.
    log = fd.message_type.add(name="PredictionLog")
    log.oneof_decl.add(name="log_type")
    _field(log, "log_metadata", 1, _F.TYPE_BYTES)
    for name, number in (("classify_log", 2), ("regress_log", 3), ("multi_inference_log", 4),
                         ("session_run_log", 5), ("predict_log", 6), ("predict_streamed_log", 7)):
        _field(log, name, number, _F.TYPE_BYTES, oneof=0)
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_saved_model_file())


def message_class(name: str) -> type[Message]:
    """A message class of the private pool, e.g. `SavedModel`."""
    cls: type[Message] = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))
    return cls


POOL: Final = _POOL
