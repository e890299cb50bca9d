"""Image emulation without processes: which images run, argv mapping, env layering."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfms.emulator.executor import ContainerSpec
from tfms.emulator.local.images import container_argv, container_env, parse_tf_serving_image


@pytest.mark.parametrize(
    ("image", "tag", "gpu"),
    [
        ("tensorflow/serving:2.19.0", "2.19.0", False),
        ("docker.io/tensorflow/serving:2.19.0-gpu", "2.19.0-gpu", True),
        ("tensorflow/serving:latest-devel-gpu", "latest-devel-gpu", True),
        ("tensorflow/serving", "latest", False),
        ("index.docker.io/tensorflow/serving:2.20.0", "2.20.0", False),
    ],
)
def test_tf_serving_images_are_recognised(image: str, tag: str, gpu: bool) -> None:
    ref = parse_tf_serving_image(image)
    assert ref is not None and ref.tag == tag and ref.gpu is gpu


def test_digest_reference() -> None:
    ref = parse_tf_serving_image("tensorflow/serving@sha256:" + "a" * 64)
    assert ref is not None and ref.digest.startswith("sha256:")


@pytest.mark.parametrize(
    "image",
    ["gcr.io/p/serving:1", "tensorflow/serving-api:1", "nginx:1.27", "us-docker.pkg.dev/p/r/tensorflow/serving:1",
     "ghcr.io/tensorflow/serving:2.19.0", "tensorflow/tensorflow:2.19.0"],
)
def test_other_images_are_not(image: str) -> None:
    assert parse_tf_serving_image(image) is None


def test_absolute_image_paths_map_to_shims(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    spec = ContainerSpec(image="x", command=("/usr/bin/tf_serving_entrypoint.sh",), args=("--a",))
    argv = container_argv(spec, bin_dir)
    assert argv == [f"{bin_dir}/tf_serving_entrypoint.sh", "--a"]
    script = "exec /usr/bin/tensorflow_model_server --x; echo /usr/bin/tensorflow_model_server_x"
    argv = container_argv(ContainerSpec(image="x", command=("/bin/sh", "-c", script)), bin_dir)
    assert argv == ["/bin/sh", "-c",
                    f"exec {bin_dir}/tensorflow_model_server --x; echo /usr/bin/tensorflow_model_server_x"]


def test_no_command_runs_the_entrypoint_with_args(tmp_path: Path) -> None:
    argv = container_argv(ContainerSpec(image="x", args=("--rest_api_port=8080",)), tmp_path / "bin")
    assert argv == [f"{tmp_path}/bin/tf_serving_entrypoint.sh", "--rest_api_port=8080"]


def test_env_layers_host_image_container_platform(tmp_path: Path) -> None:
    spec = ContainerSpec(image="x", env=(("MODEL_NAME", "m"), ("PORT", "1"), ("EXTRA", "e")), port=8080)
    env = container_env(
        host_env={"PATH": "/usr/bin", "HOME": "/root", "K_REVISION": "leak", "MODEL_BASE_PATH": "/leak"},
        container=spec, bin_dir=tmp_path / "bin", tmp_dir=tmp_path / "tmp",
        service_id="svc", revision_id="svc-1", host_port=41234, runtime_host="127.0.0.1",
    )
    assert env["HOME"] == "/root" and env["EXTRA"] == "e"
    assert env["MODEL_NAME"] == "m" and env["MODEL_BASE_PATH"] == "/models"  # image default, not host
    assert (env["PORT"], env["K_SERVICE"], env["K_REVISION"], env["K_CONFIGURATION"]) == ("8080", "svc", "svc-1", "svc")
    assert env["PATH"] == f"{tmp_path}/bin:/usr/bin"
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["TFMS_RUNTIME_PORT_MAP"] == "8080:41234,8500:0,8501:0"
    assert env["TFMS_RUNTIME_HOST"] == "127.0.0.1"


def test_container_port_8501_is_mapped_not_disabled(tmp_path: Path) -> None:
    env = container_env(
        host_env={}, container=ContainerSpec(image="x", port=8501), bin_dir=tmp_path, tmp_dir=tmp_path,
        service_id="s", revision_id="r", host_port=5, runtime_host="127.0.0.1",
    )
    assert env["TFMS_RUNTIME_PORT_MAP"] == "8501:5,8500:0"
