"""`--model_config_file`: TF Serving's text-format `ModelServerConfig`.

The message types are rebuilt here from descriptors with the field names and numbers of
`tensorflow_serving/config/model_server_config.proto` (and the protos it imports), in a
private descriptor pool so they can coexist with a real `tensorflow-serving-api`. Parsing
is protobuf's own `text_format`, so comments, quoting, `:`-less sub-messages and error
positions behave exactly as in the C++ server.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from google.protobuf.message import Message

_F = descriptor_pb2.FieldDescriptorProto
_PKG = "tensorflow.serving"


class ConfigError(ValueError):
    """The model config cannot be used; the server refuses to start."""


def add_field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    ftype: int,
    type_name: str = "",
    repeated: bool = False,
    oneof: int | None = None,
) -> None:
    f = msg.field.add(name=name, number=number, type=ftype)
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def _storage_path_file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/sources/storage_path/file_system_storage_path_source.proto",
        package=_PKG,
        syntax="proto3",
    )
    outer = fd.message_type.add(name="FileSystemStoragePathSourceConfig")
    policy = outer.nested_type.add(name="ServableVersionPolicy")
    latest = policy.nested_type.add(name="Latest")
    add_field(latest, "num_versions", 1, _F.TYPE_UINT32)
    policy.nested_type.add(name="All")
    specific = policy.nested_type.add(name="Specific")
    add_field(specific, "versions", 1, _F.TYPE_INT64, repeated=True)
    policy.oneof_decl.add(name="policy_choice")
    base = f".{_PKG}.FileSystemStoragePathSourceConfig.ServableVersionPolicy"
    add_field(policy, "latest", 100, _F.TYPE_MESSAGE, f"{base}.Latest", oneof=0)
    add_field(policy, "all", 101, _F.TYPE_MESSAGE, f"{base}.All", oneof=0)
    add_field(policy, "specific", 102, _F.TYPE_MESSAGE, f"{base}.Specific", oneof=0)
    servable = outer.nested_type.add(name="ServableToMonitor")
    add_field(servable, "servable_name", 1, _F.TYPE_STRING)
    add_field(servable, "base_path", 2, _F.TYPE_STRING)
    add_field(servable, "servable_version_policy", 4, _F.TYPE_MESSAGE, base)
    add_field(outer, "servables", 5, _F.TYPE_MESSAGE, f".{_PKG}.FileSystemStoragePathSourceConfig.ServableToMonitor",
           repeated=True)
    add_field(outer, "file_system_poll_wait_seconds", 3, _F.TYPE_INT64)
    add_field(outer, "fail_if_zero_versions_at_startup", 4, _F.TYPE_BOOL)
    add_field(outer, "servable_versions_always_present", 6, _F.TYPE_BOOL)
    return fd


def _logging_file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/logging_config.proto", package=_PKG, syntax="proto3"
    )
    collector = fd.message_type.add(name="LogCollectorConfig")
    add_field(collector, "type", 1, _F.TYPE_STRING)
    add_field(collector, "filename_prefix", 2, _F.TYPE_STRING)
    sampling = fd.message_type.add(name="SamplingConfig")
    add_field(sampling, "sampling_rate", 1, _F.TYPE_DOUBLE)
    logging = fd.message_type.add(name="LoggingConfig")
    add_field(logging, "log_collector_config", 1, _F.TYPE_MESSAGE, f".{_PKG}.LogCollectorConfig")
    add_field(logging, "sampling_config", 2, _F.TYPE_MESSAGE, f".{_PKG}.SamplingConfig")
    return fd


def _model_server_config_file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/model_server_config.proto",
        package=_PKG,
        syntax="proto3",
        dependency=[
            "google/protobuf/any.proto",
            "tensorflow_serving/config/logging_config.proto",
            "tensorflow_serving/sources/storage_path/file_system_storage_path_source.proto",
        ],
    )
    model_type = fd.enum_type.add(name="ModelType")
    for number, name in enumerate(("MODEL_TYPE_UNSPECIFIED", "TENSORFLOW", "OTHER")):
        model_type.value.add(name=name, number=number)
    cfg = fd.message_type.add(name="ModelConfig")
    add_field(cfg, "name", 1, _F.TYPE_STRING)
    add_field(cfg, "base_path", 2, _F.TYPE_STRING)
    add_field(cfg, "model_type", 3, _F.TYPE_ENUM, f".{_PKG}.ModelType")
    add_field(cfg, "model_platform", 4, _F.TYPE_STRING)
    add_field(cfg, "model_version_policy", 7, _F.TYPE_MESSAGE,
           f".{_PKG}.FileSystemStoragePathSourceConfig.ServableVersionPolicy")
    labels = cfg.nested_type.add(name="VersionLabelsEntry")
    labels.options.map_entry = True
    add_field(labels, "key", 1, _F.TYPE_STRING)
    add_field(labels, "value", 2, _F.TYPE_INT64)
    add_field(cfg, "version_labels", 8, _F.TYPE_MESSAGE, f".{_PKG}.ModelConfig.VersionLabelsEntry", repeated=True)
    add_field(cfg, "logging_config", 6, _F.TYPE_MESSAGE, f".{_PKG}.LoggingConfig")
    cfg_list = fd.message_type.add(name="ModelConfigList")
    add_field(cfg_list, "config", 1, _F.TYPE_MESSAGE, f".{_PKG}.ModelConfig", repeated=True)
    server = fd.message_type.add(name="ModelServerConfig")
    server.oneof_decl.add(name="config")
    add_field(server, "model_config_list", 1, _F.TYPE_MESSAGE, f".{_PKG}.ModelConfigList", oneof=0)
    add_field(server, "custom_model_config", 2, _F.TYPE_MESSAGE, ".google.protobuf.Any", oneof=0)
    return fd


def _batching_file() -> descriptor_pb2.FileDescriptorProto:
    """`BatchingParameters` of tensorflow_serving/servables/tensorflow/session_bundle_config.proto."""
    fd = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto", package=_PKG, syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    params = fd.message_type.add(name="BatchingParameters")
    int64, string = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    add_field(params, "max_batch_size", 1, _F.TYPE_MESSAGE, int64)
    add_field(params, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64)
    add_field(params, "thread_pool_name", 3, _F.TYPE_MESSAGE, string)
    add_field(params, "num_batch_threads", 4, _F.TYPE_MESSAGE, int64)
    add_field(params, "max_enqueued_batches", 5, _F.TYPE_MESSAGE, int64)
    add_field(params, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    add_field(params, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    add_field(params, "enable_large_batch_splitting", 8, _F.TYPE_BOOL)
    add_field(params, "max_execution_batch_size", 9, _F.TYPE_MESSAGE, int64)
    return fd


def _monitoring_file() -> descriptor_pb2.FileDescriptorProto:
    """tensorflow_serving/config/monitoring_config.proto."""
    fd = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package=_PKG, syntax="proto3"
    )
    prometheus = fd.message_type.add(name="PrometheusConfig")
    add_field(prometheus, "enable", 1, _F.TYPE_BOOL)
    add_field(prometheus, "path", 2, _F.TYPE_STRING)
    monitoring = fd.message_type.add(name="MonitoringConfig")
    add_field(monitoring, "prometheus_config", 1, _F.TYPE_MESSAGE, f".{_PKG}.PrometheusConfig")
    return fd


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    wrappers_file = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers_file)
    for fd in (any_file, wrappers_file, _storage_path_file(), _logging_file(), _model_server_config_file(),
               _batching_file(), _monitoring_file()):
        pool.Add(fd)
    return pool


_POOL = _build_pool()


def message_class(name: str) -> type[Message]:
    """A generated class for a message in the private pool, e.g. `ModelServerConfig`."""
    cls: type[Message] = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PKG}.{name}"))
    return cls


@dataclass(frozen=True)
class VersionPolicy:
    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """One served model, as the runtime needs it."""

    name: str
    base_path: str
    platform: str = "tensorflow"
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


def _policy(msg: Any) -> VersionPolicy:
    which = msg.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        return VersionPolicy("specific", versions=tuple(msg.specific.versions))
    if which == "latest":
        # The C++ source treats num_versions 0 (the proto default) as 1.
        return VersionPolicy("latest", num_versions=max(int(msg.latest.num_versions), 1))
    return VersionPolicy()


def parse_model_server_config(text: str) -> list[ModelConfig]:
    """Parse and validate a text-format ModelServerConfig."""
    msg: Any = message_class("ModelServerConfig")()
    try:
        text_format.Parse(text, msg, descriptor_pool=_POOL)
    except text_format.ParseError as exc:
        raise ConfigError(f"Invalid ModelServerConfig: {exc}") from None
    which = msg.WhichOneof("config")
    if which == "custom_model_config":
        raise ConfigError("custom_model_config is not supported by the local runtime")
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for cfg in msg.model_config_list.config:
        if cfg.name in seen:
            raise ConfigError(f"Illegal to list model {cfg.name} multiple times in config list")
        seen.add(cfg.name)
        if cfg.model_type and cfg.model_platform:
            raise ConfigError("Illegal setting both model_type(deprecated) and model_platform.")
        platform = cfg.model_platform or "tensorflow"
        if platform != "tensorflow":
            raise ConfigError(f"Model {cfg.name} requested unsupported platform {platform}")
        models.append(
            ModelConfig(
                name=cfg.name,
                base_path=cfg.base_path,
                platform=platform,
                policy=_policy(cfg.model_version_policy),
                labels=dict(sorted(cfg.version_labels.items())),
            )
        )
    return models


def single_model_config(model_name: str, model_base_path: str) -> list[ModelConfig]:
    """`--model_name`/`--model_base_path` (TF Serving's `BuildSingleModelConfig`)."""
    return [ModelConfig(name=model_name or "default", base_path=model_base_path)]


@dataclass(frozen=True)
class BatchingParams:
    """`--batching_parameters_file`, as far as it is checked (the runtime does not batch)."""

    max_batch_size: int | None = None
    batch_timeout_micros: int | None = None
    num_batch_threads: int | None = None
    max_enqueued_batches: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()


def _parse(name: str, text: str) -> Any:
    msg: Any = message_class(name)()
    try:
        text_format.Parse(text, msg, descriptor_pool=_POOL)
    except text_format.ParseError as exc:
        raise ConfigError(f"Invalid {name}: {exc}") from None
    return msg


def parse_batching_parameters(text: str) -> BatchingParams:
    """Parse a text-format BatchingParameters and apply the server's consistency checks."""
    msg = _parse("BatchingParameters", text)

    def value(field_name: str) -> int | None:
        return int(getattr(msg, field_name).value) if msg.HasField(field_name) else None

    params = BatchingParams(value("max_batch_size"), value("batch_timeout_micros"), value("num_batch_threads"),
                            value("max_enqueued_batches"), tuple(int(v) for v in msg.allowed_batch_sizes))
    sizes = params.allowed_batch_sizes
    if any(b <= a for a, b in itertools.pairwise(sizes)):
        raise ConfigError("allowed_batch_sizes entries must be monotonically increasing")
    max_size = params.max_batch_size if params.max_batch_size is not None else 1000  # BasicBatchScheduler default
    if sizes and sizes[-1] != max_size and not msg.enable_large_batch_splitting:
        raise ConfigError("final entry in allowed_batch_sizes must equal max_batch_size when "
                          "enable_large_batch_splitting is False")
    return params


@dataclass(frozen=True)
class MonitoringConfig:
    prometheus_enabled: bool = False
    prometheus_path: str = ""


PROMETHEUS_DEFAULT_PATH = "/monitoring/prometheus/metrics"


def parse_monitoring_config(text: str) -> MonitoringConfig:
    """A text-format MonitoringConfig; an empty Prometheus path means the default one."""
    msg = _parse("MonitoringConfig", text)
    prometheus = msg.prometheus_config
    return MonitoringConfig(bool(prometheus.enable), prometheus.path or PROMETHEUS_DEFAULT_PATH)
