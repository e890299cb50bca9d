"""`tensorflow_model_server` command-line flags.

Arguments are applied left to right and a later duplicate wins, which is what makes
`docker run tensorflow/serving --rest_api_port=8080` override the image's entrypoint.
Both `--flag=value` and `--flag value` are accepted. Flags the runtime cannot emulate are
still accepted (a container spec written for the real server must start) and reported
by `not_emulated` so the caller can warn about them once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["int", "float", "bool", "str"]


@dataclass(frozen=True)
class FlagSpec:
    kind: Kind
    default: int | float | bool | str
    help: str
    emulated: bool = True


_CPUS = os.cpu_count() or 1

SPECS: dict[str, FlagSpec] = {
    "port": FlagSpec("int", 8500, "gRPC port (accepted; gRPC is not served locally)"),
    "rest_api_port": FlagSpec("int", 0, "REST port; 0 disables REST"),
    "rest_api_num_threads": FlagSpec("int", 4 * _CPUS, "threads running REST requests"),
    "rest_api_timeout_in_ms": FlagSpec("int", 30000, "REST request timeout; 0 means none"),
    "rest_api_enable_cors_support": FlagSpec("bool", False, "add CORS headers to REST responses"),
    "model_name": FlagSpec("str", "default", "model name (ignored with --model_config_file)"),
    "model_base_path": FlagSpec("str", "", "directory of numeric version subdirectories"),
    "model_config_file": FlagSpec("str", "", "text-format ModelServerConfig"),
    "model_config_file_poll_wait_seconds": FlagSpec("int", 0, "config re-read interval", False),
    "file_system_poll_wait_seconds": FlagSpec("int", 1, "interval between polls for new versions"),
    "allow_version_labels_for_unavailable_models": FlagSpec(
        "bool", False, "allow labels on versions that are not loaded"
    ),
    "saved_model_tags": FlagSpec("str", "serve", "comma-separated MetaGraphDef tags"),
    "tensorflow_session_parallelism": FlagSpec("int", 0, "threads per session; 0 = auto"),
    "tensorflow_intra_op_parallelism": FlagSpec("int", 0, "intra-op threads; 0 = auto"),
    "tensorflow_inter_op_parallelism": FlagSpec("int", 0, "inter-op threads; 0 = auto"),
    "enable_model_warmup": FlagSpec("bool", True, "replay assets.extra warmup requests (predict records)"),
    "enable_batching": FlagSpec("bool", False, "server-side request batching", False),
    "batching_parameters_file": FlagSpec("str", "", "text-format BatchingParameters", False),
    "enable_per_model_batching_parameters": FlagSpec("bool", False, "per-model batching", False),
    "monitoring_config_file": FlagSpec("str", "", "text-format MonitoringConfig (Prometheus on the REST port)"),
    "max_num_load_retries": FlagSpec("int", 5, "load retries", False),
    "load_retry_interval_micros": FlagSpec("int", 60_000_000, "delay between load retries", False),
    "enable_signature_method_name_check": FlagSpec("bool", False, "check method names", False),
    "grpc_max_threads": FlagSpec("int", 4 * _CPUS, "gRPC threads", False),
    "grpc_channel_arguments": FlagSpec("str", "", "gRPC channel arguments", False),
    "grpc_socket_path": FlagSpec("str", "", "gRPC UNIX socket", False),
    "platform_config_file": FlagSpec("str", "", "text-format PlatformConfigMap", False),
    "per_process_gpu_memory_fraction": FlagSpec("float", 0.0, "GPU memory fraction", False),
    "flush_filesystem_caches": FlagSpec("bool", True, "flush caches after loads", False),
    "num_load_threads": FlagSpec("int", 0, "model load threads", False),
    "num_unload_threads": FlagSpec("int", 0, "model unload threads", False),
    "ssl_config_file": FlagSpec("str", "", "gRPC SSL config", False),
    "xla_cpu_compilation_enabled": FlagSpec("bool", False, "XLA on CPU", False),
    "enable_profiler": FlagSpec("bool", True, "profiler service", False),
    "remove_unused_fields_from_bundle_metagraph": FlagSpec("bool", True, "trim MetaGraphDef", False),
    "use_tflite_model": FlagSpec("bool", False, "serve model.tflite", False),
    "version": FlagSpec("bool", False, "print the version and exit"),
}

_INT = re.compile(r"[+-]?\d+")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


class FlagError(ValueError):
    """A bad or unknown argument; the server prints it with the usage text and exits."""


@dataclass
class Flags:
    """Parsed values plus which flags were given explicitly (for warnings)."""

    values: dict[str, int | float | bool | str]
    given: list[str] = field(default_factory=list)

    def get_int(self, name: str) -> int:
        v = self.values[name]
        assert isinstance(v, int)
        return v

    def get_str(self, name: str) -> str:
        v = self.values[name]
        assert isinstance(v, str)
        return v

    def get_bool(self, name: str) -> bool:
        v = self.values[name]
        assert isinstance(v, bool)
        return v

    def not_emulated(self) -> list[str]:
        """Explicitly given flags whose effect the local runtime does not reproduce."""
        return [n for n in dict.fromkeys(self.given) if not SPECS[n].emulated]


def _convert(name: str, spec: FlagSpec, raw: str) -> int | float | bool | str:
    if spec.kind == "str":
        return raw
    if spec.kind == "bool":
        if raw.lower() in _BOOLS:
            return _BOOLS[raw.lower()]
        raise FlagError(f"Illegal value for flag --{name}: {raw!r} is not a boolean")
    if spec.kind == "int":
        if _INT.fullmatch(raw.strip()):
            value = int(raw)
            if -(2**63) <= value < 2**63:
                return value
        raise FlagError(f"Illegal value for flag --{name}: {raw!r} is not an integer")
    try:
        return float(raw)
    except ValueError:
        raise FlagError(f"Illegal value for flag --{name}: {raw!r} is not a number") from None


def parse_flags(argv: list[str]) -> Flags:
    """Parse arguments (without the program name)."""
    flags = Flags({name: spec.default for name, spec in SPECS.items()})
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"unknown argument: {arg}")
        body = arg.lstrip("-")
        name, eq, raw = body.partition("=")
        spec = SPECS.get(name)
        if spec is None:
            raise FlagError(f"unknown argument: {arg}")
        if not eq:
            if spec.kind == "bool":
                if i < len(argv) and argv[i].lower() in _BOOLS:
                    raw = argv[i]
                    i += 1
                else:
                    raw = "true"
            elif i < len(argv):
                raw = argv[i]
                i += 1
            else:
                raise FlagError(f"Illegal value for flag --{name}: missing value")
        flags.values[name] = _convert(name, spec, raw)
        flags.given.append(name)
    return flags


def usage(program: str = "tensorflow_model_server") -> str:
    """A usage text in the spirit of TF's `Flags::Usage`."""
    lines = [f"usage: {program}", "Flags:"]
    for name, spec in SPECS.items():
        default = str(spec.default).lower() if spec.kind == "bool" else repr(spec.default)
        if spec.kind == "str":
            default = f'"{spec.default}"'
        note = "" if spec.emulated else " [accepted, not emulated locally]"
        lines.append(f"\t--{name}={default}\t{spec.kind}\t{spec.help}{note}")
    return "\n".join(lines) + "\n"
