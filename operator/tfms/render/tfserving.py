"""The TensorFlow Serving container: command, flags and model config from the spec.

REST listens on the Cloud Run container port and gRPC stays on 8500, because equal ports
make TF Serving silently skip REST. A pinned version becomes a `model_version_policy` in a
generated model config, so a new version directory in the bucket never changes the served
model by itself. Generated files (model config, batching parameters) travel in env vars and
a tiny shell wrapper writes them out before exec'ing the server, which works with the stock
image and no volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfms.api import names
from tfms.api.model import Batching, TFModelService

SERVER_BINARY = "tensorflow_model_server"
BATCHING_CONFIG_ENV = "TFMS_BATCHING_CONFIG"


@dataclass(frozen=True)
class ServingCommand:
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def model_config(svc: TFModelService) -> str:
    """A text-format ModelServerConfig pinning the spec's version."""
    model = svc.model
    policy = f"model_version_policy {{ specific {{ versions: {model.version} }} }}\n" if model.version else ""
    return (
        "model_config_list {\n"
        "  config {\n"
        f"    name: {_quote(model.name)}\n"
        f"    base_path: {_quote(model.base_path)}\n"
        '    model_platform: "tensorflow"\n'
        + (f"    {policy}" if policy else "")
        + "  }\n"
        "}\n"
    )


def batching_config(batching: Batching) -> str:
    """A text-format BatchingParameters file."""
    fields = [("max_batch_size", batching.max_batch_size), ("batch_timeout_micros", batching.batch_timeout_micros),
              ("max_enqueued_batches", batching.max_enqueued_batches),
              ("num_batch_threads", batching.num_batch_threads)]
    return "".join(f"{name} {{ value: {value} }}\n" for name, value in fields if value is not None)


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
    if svc.model.version is not None:
        files.append((names.MODEL_CONFIG_ENV, "tfms-models.config", "--model_config_file"))
        env.append((names.MODEL_CONFIG_ENV, model_config(svc)))
    if svc.runtime.batching is not None:
        flags += ("--enable_batching=true",)
        files.append((BATCHING_CONFIG_ENV, "tfms-batching.config", "--batching_parameters_file"))
        env.append((BATCHING_CONFIG_ENV, batching_config(svc.runtime.batching)))
    args = flags + svc.runtime.args
    if not files:
        return ServingCommand(command=(SERVER_BINARY,), args=args, env=())
    return ServingCommand(command=("/bin/sh", "-c", _wrapper(files), SERVER_BINARY), args=args, env=tuple(env))
