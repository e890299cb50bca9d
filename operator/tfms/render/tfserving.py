"""The TensorFlow Serving container: command, flags and model config from the spec.

REST listens on the Cloud Run container port and gRPC stays on 8500, because equal ports
make TF Serving silently skip REST. A pinned version becomes a `model_version_policy` in a
generated model config, so a new version directory in the bucket never changes the served
model by itself; the config travels in an env var and a tiny shell wrapper writes it to a
file, which works with the stock image and no volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfms.api import names
from tfms.api.model import TFModelService

SERVER_BINARY = "tensorflow_model_server"
CONFIG_FILE_SCRIPT = (
    'f="${TMPDIR:-/tmp}/tfms-models.config"; '
    f'printf \'%s\' "${names.MODEL_CONFIG_ENV}" > "$f" && '
    f'exec {SERVER_BINARY} --model_config_file="$f" "$@"'
)


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


def serving_command(svc: TFModelService) -> ServingCommand:
    flags = (
        f"--port={names.TFSERVING_GRPC_PORT}",
        f"--rest_api_port={names.CONTAINER_PORT}",
        f"--model_name={svc.model.name}",
        f"--model_base_path={svc.model.base_path}",
    )
    args = flags + svc.runtime.args
    if svc.model.version is None:
        return ServingCommand(command=(SERVER_BINARY,), args=args, env=())
    return ServingCommand(
        command=("/bin/sh", "-c", CONFIG_FILE_SCRIPT, SERVER_BINARY),
        args=args,
        env=((names.MODEL_CONFIG_ENV, model_config(svc)),),
    )
