"""Emulating the TF Serving image on the host: which images qualify, the image's files, env.

The real `tensorflow_model_server` binary cannot be installed here, so a revision's
container is reproduced with shims: `bin/tensorflow_model_server` execs the local runtime
(`python -m tfms.runtime` by default) and `bin/tf_serving_entrypoint.sh` is the image's
entrypoint script. The container's own command then runs unchanged through the real
`/bin/sh`, so wrapper scripts, `"$@"` and flag overrides behave exactly as in the image.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tfms.emulator.executor import ContainerSpec

TF_SERVING_REPOSITORY = "tensorflow/serving"
_DOCKER_HUB_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")

SERVER_SHIM = "tensorflow_model_server"
ENTRYPOINT_SHIM = "tf_serving_entrypoint.sh"
# Where the official image keeps them; an absolute reference to either maps to the shim.
IMAGE_ENTRYPOINT = "/usr/bin/tf_serving_entrypoint.sh"
_SHIM_NAMES = (SERVER_SHIM, ENTRYPOINT_SHIM)
_ABSOLUTE_SHIM_REF = re.compile(
    r"(?<![\w./-])/(?:usr/(?:local/)?)?s?bin/(tensorflow_model_server|tf_serving_entrypoint\.sh)(?![\w.-])"
)

# `ENV` lines of the official Dockerfile; container env overrides them.
IMAGE_ENV: tuple[tuple[str, str], ...] = (("MODEL_NAME", "model"), ("MODEL_BASE_PATH", "/models"))
GRPC_PORT = 8500  # hard-coded by the entrypoint; never reachable from outside on Cloud Run
ENTRYPOINT_REST_PORT = 8501

DEFAULT_RUNTIME_COMMAND: tuple[str, ...] = (sys.executable, "-m", "tfms.runtime")

# Host variables that belong to a container or to our plumbing, never inherited.
_NOT_INHERITED = frozenset(
    {
        "PORT",
        "K_SERVICE",
        "K_REVISION",
        "K_CONFIGURATION",
        "MODEL_NAME",
        "MODEL_BASE_PATH",
        "TFMS_MODEL_CONFIG",
        "TFMS_RUNTIME_PORT_MAP",
        "TFMS_RUNTIME_HOST",
    }
)


@dataclass(frozen=True)
class ImageRef:
    """A TF Serving image reference, normalised (no registry prefix)."""

    repository: str
    tag: str
    digest: str

    @property
    def gpu(self) -> bool:
        return "gpu" in self.tag.split("-")


def parse_tf_serving_image(image: str) -> ImageRef | None:
    """The image as a TF Serving reference, or None when local mode cannot emulate it."""
    ref = image.strip()
    for prefix in _DOCKER_HUB_PREFIXES:
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    ref, _, digest = ref.partition("@")
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:  # no tag, or the colon belonged to something else
        repository, tag = ref, ""
    if repository != TF_SERVING_REPOSITORY:
        return None
    return ImageRef(repository=repository, tag=tag or ("" if digest else "latest"), digest=digest)


def unsupported_image_message(image: str) -> str:
    return (
        f"Image '{image}' cannot run in local mode: only TensorFlow Serving images "
        f"({TF_SERVING_REPOSITORY}[:TAG], optionally docker.io/-prefixed) are emulated locally, "
        "by the tfms model runtime."
    )


def write_shims(bin_dir: Path, runtime_command: Sequence[str]) -> None:
    """Write the image's executables into `bin_dir` (created if needed)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    server = (
        "#!/bin/sh\n"
        "# tfms local mode: stands in for TF Serving's binary; same flags, same ports.\n"
        f'exec {shlex.join(runtime_command)} "$@"\n'
    )
    # Mirrors /usr/bin/tf_serving_entrypoint.sh of the official image (plus `exec`, so the
    # server keeps the container's pid and receives its signals).
    entrypoint = (
        "#!/bin/sh\n"
        f"exec {SERVER_SHIM} --port={GRPC_PORT} --rest_api_port={ENTRYPOINT_REST_PORT} \\\n"
        '  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" \\\n'
        '  "$@"\n'
    )
    for name, text in ((SERVER_SHIM, server), (ENTRYPOINT_SHIM, entrypoint)):
        path = bin_dir / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)


def container_argv(container: ContainerSpec, bin_dir: Path) -> list[str]:
    """`command + args`, or the image entrypoint + args, with image paths mapped to shims.

    Docker semantics: a non-empty `command` replaces the image's ENTRYPOINT; `args` are
    appended either way. Absolute references to the image's binaries (as argv[0] or inside
    a `sh -c` script) are rewritten, since `/usr/bin` on the host has no TF Serving.
    """
    argv = [*container.command] if container.command else [IMAGE_ENTRYPOINT]
    argv.extend(container.args)
    first = argv[0]
    if os.path.isabs(first) and os.path.basename(first) in _SHIM_NAMES:
        argv[0] = str(bin_dir / os.path.basename(first))
    shim_dir = str(bin_dir)
    return [argv[0], *(_ABSOLUTE_SHIM_REF.sub(lambda m: f"{shim_dir}/{m[1]}", a) for a in argv[1:])]


def container_env(
    *,
    host_env: Mapping[str, str],
    container: ContainerSpec,
    bin_dir: Path,
    tmp_dir: Path,
    service_id: str,
    revision_id: str,
    host_port: int,
    runtime_host: str,
) -> dict[str, str]:
    """The process environment, layered as Docker and Cloud Run layer it.

    Host env first (so Python and TensorFlow behave as on the host), then the image's ENV,
    the container's env, the variables Cloud Run injects, and last the runtime plumbing:
    the container port maps to `host_port`, and the ports nobody can reach on Cloud Run
    (gRPC, and the entrypoint's 8501 unless it is the container port) are not bound.
    """
    env = {k: v for k, v in host_env.items() if k not in _NOT_INHERITED}
    env.update(IMAGE_ENV)
    env.update(container.env)
    port = container.port
    env.update(
        {
            "PORT": str(port),
            "K_SERVICE": service_id,
            "K_REVISION": revision_id,
            "K_CONFIGURATION": service_id,
        }
    )
    path = env.get("PATH") or os.defpath
    env["PATH"] = f"{bin_dir}{os.pathsep}{path}"
    env["TMPDIR"] = str(tmp_dir)  # the container's private /tmp
    port_map = [f"{port}:{host_port}"]
    port_map += [f"{p}:0" for p in (GRPC_PORT, ENTRYPOINT_REST_PORT) if p != port]
    env["TFMS_RUNTIME_PORT_MAP"] = ",".join(port_map)
    env["TFMS_RUNTIME_HOST"] = runtime_host
    return env
