"""`python -m tfms.runtime` as a process: start-up, ports, signals and failures (REST behaviour is in
test_parity.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.runtime.conftest import HALF_PLUS_TWO, Client, RuntimeProcess, free_port, port_open, start_runtime

pytestmark = pytest.mark.slow

PREDICT_BODY = '{"instances": [1.0, 2.0, 5.0]}'


# ---- process behaviour ---------------------------------------------------------------


def test_default_model_name_port_map_and_sigterm(tmp_path: Path) -> None:
    """Told `--rest_api_port=8080` like a Cloud Run container; the map moves it to a free port."""
    port = free_port()
    proc = start_runtime(["--rest_api_port=8080", f"--model_base_path={HALF_PLUS_TWO}"], tmp_path, port,
                         env={"TFMS_RUNTIME_PORT_MAP": f"8080:{port},8500:0"})
    client = Client(port)
    status, doc = client.get("/v1/models/default")
    assert status == 200
    assert [s["version"] for s in doc["model_version_status"]] == ["2"]  # latest only by default
    assert client.post("/v1/models/default:predict", PREDICT_BODY) == (200, {"predictions": [3.5, 4.0, 5.5]})
    assert "gRPC is not served" in proc.log()
    assert proc.stop(signal.SIGTERM) == 0
    assert not port_open(port)


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = start_runtime([f"--rest_api_port={port}", f"--model_base_path={HALF_PLUS_TWO}", "--enable_batching"],
                         tmp_path, port)
    assert "--enable_batching=True is accepted but not emulated" in proc.log()
    assert proc.stop(signal.SIGINT) == 0


def test_rest_port_equal_to_grpc_port_skips_rest(tmp_path: Path) -> None:
    port = free_port()
    proc = RuntimeProcess([f"--port={port}", f"--rest_api_port={port}", f"--model_base_path={HALF_PLUS_TWO}"],
                          tmp_path / "same.log")
    proc.wait_for_log("Skipped setting up HTTP/REST API server.")
    proc.wait_for_log("Successfully loaded servable version {name: default version: 2}")
    assert proc.proc.poll() is None  # like TF Serving: logs an error, keeps running
    assert not port_open(port)
    assert proc.stop() == 0


def test_sigterm_while_loading_exits_cleanly(tmp_path: Path) -> None:
    proc = RuntimeProcess(["--rest_api_port=0", f"--model_base_path={tmp_path / 'not-yet'}"], tmp_path / "wait.log")
    proc.wait_for_log("Could not find base path")  # TF Serving keeps waiting for the model to appear
    assert proc.proc.poll() is None
    assert proc.stop() == 0


def test_failed_load_exits_nonzero_with_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    port = free_port()
    proc = RuntimeProcess([f"--rest_api_port={port}", f"--model_base_path={broken.parent}", "--model_name=b"],
                          tmp_path / "broken.log")
    assert proc.wait_exit() == 255
    log = proc.log()
    assert "Failed to start server. Error: Loading servable: {name: b version: 1} failed" in log
    assert not port_open(port)


def test_missing_model_config_file_exits_nonzero(tmp_path: Path) -> None:
    proc = RuntimeProcess(["--rest_api_port=0", f"--model_config_file={tmp_path / 'nope.config'}"],
                          tmp_path / "nocfg.log")
    assert proc.wait_exit() == 255
    assert "Failed to start server. Error: Could not read model config file" in proc.log()


def test_port_opens_only_once_the_model_is_loaded_b024(tmp_path: Path) -> None:
    """B-024 / reference §3.8 startup order: REST opens after the model is AVAILABLE, so the first request a
    probe lets through gets 200, never a 'not ready' 4xx."""
    import shutil

    base = tmp_path / "later"
    port = free_port()
    proc = RuntimeProcess([f"--rest_api_port={port}", "--model_name=m", f"--model_base_path={base}"],
                          tmp_path / "late.log")
    proc.wait_for_log("Could not find base path")
    assert not port_open(port)
    shutil.copytree(HALF_PLUS_TWO / "1", tmp_path / "staging")
    base.mkdir()
    (tmp_path / "staging").rename(base / "1")  # a version appears atomically, as an upload tool would do
    proc.wait_for_port(port)
    assert Client(port).post("/v1/models/m:predict", {"instances": [1.0]}) == (200, {"predictions": [2.5]})
    assert proc.stop() == 0
