"""The TensorFlow Serving container: command, flags and generated config files from the spec.

REST listens on the Cloud Run container port and gRPC stays on 8500, because equal ports
make TF Serving silently skip REST. A pinned version and version labels become a
`model_version_policy` and `version_labels` in a generated model config, so a new version
directory in the bucket never changes the served model by itself. Generated files (model
config, batching parameters, monitoring config) travel in env vars and a tiny shell wrapper
writes them out before exec'ing the server, which works with the stock image and no volumes.
Every file is text-format protobuf of the message the flag takes (reference §3.6, §3.7).
"""

from __future__ import annotations

from dataclasses import dataclass

from tfms.api import names
from tfms.api.model import Batching, Monitoring, TFModelService

SERVER_BINARY = "tensorflow_model_server"
BATCHING_CONFIG_ENV = "TFMS_BATCHING_CONFIG"
MONITORING_CONFIG_ENV = "TFMS_MONITORING_CONFIG"


@dataclass(frozen=True)
class ServingCommand:
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def needs_model_config(svc: TFModelService) -> bool:
    """A version policy or labels can only be expressed in a model config file."""
    return bool(svc.model.policy_versions)


def model_config(svc: TFModelService) -> str:
    """A text-format ModelServerConfig: the pin and labelled versions as a `specific` policy, and the labels."""
    model = svc.model
    versions = " ".join(f"versions: {v}" for v in model.policy_versions)
    lines = [
        "model_config_list {",
        "  config {",
        f"    name: {_quote(model.name)}",
        f"    base_path: {_quote(model.base_path)}",
        '    model_platform: "tensorflow"',
    ]
    if versions:
        lines.append(f"    model_version_policy {{ specific {{ {versions} }} }}")
    lines.extend(f"    version_labels {{ key: {_quote(label)} value: {version} }}"
                 for label, version in model.version_labels)
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def batching_config(batching: Batching) -> str:
    """A text-format BatchingParameters file (wrapper-typed fields, then the repeated sizes)."""
    fields = [("max_batch_size", batching.max_batch_size), ("batch_timeout_micros", batching.batch_timeout_micros),
              ("max_enqueued_batches", batching.max_enqueued_batches),
              ("num_batch_threads", batching.num_batch_threads)]
    text = "".join(f"{name} {{ value: {value} }}\n" for name, value in fields if value is not None)
    return text + "".join(f"allowed_batch_sizes: {size}\n" for size in batching.allowed_batch_sizes)


def monitoring_config(monitoring: Monitoring) -> str:
    """A text-format MonitoringConfig enabling Prometheus metrics on the REST port."""
    return f"prometheus_config {{\n  enable: true\n  path: {_quote(monitoring.path)}\n}}\n"


def _wrapper(files: list[tuple[str, str, str]]) -> str:
    """A POSIX sh script writing each (env var, file name, flag) to a file, then exec'ing the server.

    TMPDIR when set (the local emulator gives each revision its own), else /tmp.
    """
    steps = [f'printf \'%s\' "${env}" > "$d/{name}"' for env, name, _ in files]
    flags = " ".join(f'{flag}="$d/{name}"' for _, name, flag in files)
    return 'd="${TMPDIR:-/tmp}"; ' + " && ".join(steps) + f" && exec {SERVER_BINARY} {flags} \"$@\""


def serving_command(svc: TFModelService) -> ServingCommand:
    flags: tuple[str, ...] = (
        f"--port={names.TFSERVING_GRPC_PORT}",
        f"--rest_api_port={names.CONTAINER_PORT}",
        f"--model_name={svc.model.name}",
        f"--model_base_path={svc.model.base_path}",
    )
    files: list[tuple[str, str, str]] = []
    env: list[tuple[str, str]] = []
    if needs_model_config(svc):
        files.append((names.MODEL_CONFIG_ENV, "tfms-models.config", "--model_config_file"))
        env.append((names.MODEL_CONFIG_ENV, model_config(svc)))
    if svc.runtime.batching is not None:
        flags += ("--enable_batching=true",)
        files.append((BATCHING_CONFIG_ENV, "tfms-batching.config", "--batching_parameters_file"))
        env.append((BATCHING_CONFIG_ENV, batching_config(svc.runtime.batching)))
    if svc.runtime.monitoring is not None:
        files.append((MONITORING_CONFIG_ENV, "tfms-monitoring.config", "--monitoring_config_file"))
        env.append((MONITORING_CONFIG_ENV, monitoring_config(svc.runtime.monitoring)))
    if not svc.runtime.warmup:
        flags += ("--enable_model_warmup=false",)  # the server's default is true: only the change is rendered
    args = flags + svc.runtime.args
    if not files:
        return ServingCommand(command=(SERVER_BINARY,), args=args, env=())
    return ServingCommand(command=("/bin/sh", "-c", _wrapper(files), SERVER_BINARY), args=args, env=tuple(env))
