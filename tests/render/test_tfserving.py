"""The TF Serving container follows the rules that bite people on Cloud Run."""

from __future__ import annotations

import pytest

from tests.conftest import base_object
from tfms.api.validation import parse
from tfms.render.cloudrun import render_service
from tfms.render.tfserving import model_config


def _container(**spec: object) -> dict[str, object]:
    body = render_service(parse(base_object(**spec))).body
    return body["template"]["containers"][0]  # type: ignore[no-any-return]


def _flags(container: dict[str, object]) -> dict[str, str]:
    out = {}
    for arg in container["args"]:  # type: ignore[attr-defined]
        key, _, value = arg.partition("=")
        out[key] = value  # later duplicates win, as in TF Serving
    return out


def test_rest_on_container_port_never_grpc_port() -> None:
    c = _container()
    flags = _flags(c)
    assert c["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert flags["--rest_api_port"] == "8080" and flags["--port"] == "8500"
    assert flags["--rest_api_port"] != flags["--port"]


def test_model_name_always_given_i023() -> None:
    """I-023: without --model_name TF Serving names the model `default`."""
    flags = _flags(_container())
    assert flags["--model_name"] == "fraud"
    assert flags["--model_base_path"] == "gs://example-bucket/models/fraud"


def test_unpinned_runs_server_directly() -> None:
    c = _container()
    assert c["command"] == ["tensorflow_model_server"]
    assert "env" not in c


def test_pinned_version_becomes_version_policy() -> None:
    c = _container(model={"name": "fraud", "basePath": "gs://b/m", "version": 7})
    assert c["command"][:2] == ["/bin/sh", "-c"]  # type: ignore[index]
    env = {e["name"]: e["value"] for e in c["env"]}  # type: ignore[attr-defined]
    config = env["TFMS_MODEL_CONFIG"]
    assert "model_version_policy { specific { versions: 7 } }" in config
    assert 'name: "fraud"' in config and 'base_path: "gs://b/m"' in config


def test_user_args_come_after_generated_flags() -> None:
    c = _container(runtime={"image": "tensorflow/serving:2.19.0", "args": ["--rest_api_timeout_in_ms=5000"]})
    assert c["args"][-1] == "--rest_api_timeout_in_ms=5000"  # type: ignore[index]


@pytest.mark.parametrize("name", ['we"ird', "back\\slash"])
def test_model_config_quotes_strings(name: str) -> None:
    svc = parse(base_object(model={"name": "m", "basePath": f"/models/{name}", "version": 1}))
    text = model_config(svc)
    assert f"/models/{name}".replace("\\", "\\\\").replace('"', '\\"') in text
