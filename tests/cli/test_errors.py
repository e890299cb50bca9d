"""Every CLI error is one `error: ...` line naming the flag, variable, file or endpoint and the rule,
with exit 2 for usage and environment errors and 1 for invalid specs: never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from google.api_core import exceptions as gexc

from tests.conftest import base_object
from tfms.api.defaults import Defaults
from tfms.api.errors import SettingInvalid
from tfms.backends.cloudrun import translate
from tfms.backends.errors import Transient
from tfms.cli.main import main

ENV_VARS = ("TFMS_EMULATOR_PORT", "TFMS_EMULATOR_REST_PORT", "TFMS_LOG_LEVEL", "TFMS_POLL_INTERVAL",
            "TFMS_APPLY_TIMEOUT", "TFMS_PROJECT", "TFMS_REGION", "TFMS_CLOUDRUN_ENDPOINT", "TFMS_METRICS_URL",
            "TFMS_ROUTER_HOST", "TFMS_LOCAL_DIR", "TFMS_LOCAL_IDLE_SECONDS", "TFMS_EMULATOR_HOST")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(base_object()))
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main() as the console script runs it: argparse's own usage errors exit through SystemExit."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _error_line(err: str) -> str:
    """The last stderr line (argparse prints its usage above it), checked to be the only `error:` one."""
    lines = [line for line in err.strip().splitlines() if line]
    assert "Traceback" not in err
    assert sum("error:" in line for line in lines) == 1, err
    return lines[-1]


# (argv with FILE for the manifest, environment, exit code, the one error line must contain)
SETTINGS_CASES = [
    pytest.param(["validate", "FILE"], {"TFMS_EMULATOR_PORT": "abc"}, 0, None,
                 id="bad-emulator-port-does-not-break-validate"),
    pytest.param(["validate", "FILE"], {"TFMS_EMULATOR_REST_PORT": "abc"}, 0, None,
                 id="bad-rest-port-does-not-break-validate"),
    pytest.param(["emulator"], {"TFMS_EMULATOR_PORT": "abc"}, 2,
                 "TFMS_EMULATOR_PORT must be a port number 0-65535, got 'abc'", id="emulator-port-env-abc"),
    pytest.param(["emulator"], {"TFMS_EMULATOR_PORT": "99999"}, 2,
                 "TFMS_EMULATOR_PORT must be a port number 0-65535, got '99999'", id="emulator-port-env-wraps"),
    pytest.param(["emulator", "--port", "99999"], {}, 2,
                 "argument --port: must be a port number 0-65535, got '99999'", id="emulator-port-flag"),
    pytest.param(["up", "--port", "-1", "FILE"], {}, 2,
                 "argument --port: must be a port number 0-65535, got '-1'", id="up-port-flag"),
    pytest.param(["emulator", "--rest-port", "70000"], {}, 2,
                 "argument --rest-port: must be a port number 0-65535 or 'off'", id="rest-port-flag"),
    pytest.param(["emulator"], {"TFMS_EMULATOR_REST_PORT": "abc"}, 2,
                 "$TFMS_EMULATOR_REST_PORT), got 'abc'", id="rest-port-env"),
    pytest.param(["--log-level", "LOUD", "validate", "FILE"], {}, 2,
                 "argument --log-level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
                 id="log-level-flag"),
    pytest.param(["validate", "FILE"], {"TFMS_LOG_LEVEL": "LOUD"}, 2,
                 "error: TFMS_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
                 id="log-level-env"),
    pytest.param(["apply", "-f", "FILE"], {"TFMS_POLL_INTERVAL": "0"}, 2,
                 "error: TFMS_POLL_INTERVAL must be a number of seconds > 0, got '0'", id="poll-interval-zero"),
    pytest.param(["apply", "-f", "FILE"], {"TFMS_POLL_INTERVAL": "-1"}, 2,
                 "error: TFMS_POLL_INTERVAL must be a number of seconds > 0, got '-1'", id="poll-interval-negative"),
    pytest.param(["rollout", "status", "-f", "FILE"], {"TFMS_POLL_INTERVAL": "nan"}, 2,
                 "error: TFMS_POLL_INTERVAL must be a number of seconds > 0, got 'nan'", id="rollout-poll-interval"),
    pytest.param(["apply", "-f", "FILE"], {"TFMS_APPLY_TIMEOUT": "0"}, 2,
                 "error: TFMS_APPLY_TIMEOUT must be a number of seconds > 0, got '0'", id="apply-timeout-env"),
    pytest.param(["apply", "--timeout", "-5", "-f", "FILE"], {}, 2,
                 "argument --timeout: must be a number of seconds > 0, got '-5'", id="apply-timeout-flag"),
    pytest.param(["rollout", "promote", "--timeout", "0", "-f", "FILE"], {}, 2,
                 "argument --timeout: must be a number of seconds > 0, got '0'", id="rollout-timeout-flag"),
    pytest.param(["validate", "FILE"], {"TFMS_PROJECT": "Bad_Project"}, 2,
                 "error: TFMS_PROJECT: a project ID is 6-30 lowercase letters, digits or '-', starting with a "
                 "letter [project-id] (got 'Bad_Project'", id="project-default"),
    pytest.param(["up", "--port", "0", "FILE"], {"TFMS_ROUTER_HOST": "999.1.1.1"}, 2,
                 "error: $TFMS_ROUTER_HOST='999.1.1.1': the router cannot listen there",
                 id="router-host-not-an-address"),
    pytest.param(["emulator", "--local", "--port", "0"], {"TFMS_ROUTER_HOST": "192.0.2.7"}, 2,
                 "error: $TFMS_ROUTER_HOST='192.0.2.7': the router cannot listen there", id="router-host-not-local"),
    pytest.param(["up", "--port", "0", "FILE"], {"TFMS_LOCAL_DIR": "/dev/null/work"}, 2,
                 "error: $TFMS_LOCAL_DIR='/dev/null/work': cannot create the directory", id="local-dir-uncreatable"),
    pytest.param(["up", "--port", "0", "FILE"], {"TFMS_LOCAL_IDLE_SECONDS": "soon"}, 2,
                 "error: $TFMS_LOCAL_IDLE_SECONDS='soon': must be a number of seconds > 0, or off",
                 id="local-idle-seconds"),
    pytest.param(["emulator", "--port", "0"], {"TFMS_EMULATOR_HOST": "999.1.1.1"}, 2,
                 "error: $TFMS_EMULATOR_HOST='999.1.1.1': the emulator cannot listen there",
                 id="emulator-host-env"),
    pytest.param(["up", "--host", "192.0.2.7", "--port", "0", "FILE"], {}, 2,
                 "error: --host='192.0.2.7': the emulator cannot listen there", id="up-host-flag"),
    pytest.param(["render", "FILE"], {"TFMS_REGION": "mars"}, 2,
                 "error: TFMS_REGION: must be a Cloud Run region such as us-central1 [region] (got 'mars'",
                 id="region-default"),
]


@pytest.mark.parametrize(("argv", "env", "code", "message"), SETTINGS_CASES)
def test_settings_are_checked_where_read(argv: list[str], env: dict[str, str], code: int, message: str | None,
                                         manifest: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    got, out, err = run([str(manifest) if a == "FILE" else a for a in argv], capsys)
    assert got == code, err
    if message is None:
        assert out.strip() == f"{manifest}: ok"
    else:
        assert message in _error_line(err)


def test_valid_defaults_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Defaults.from_env({"TFMS_PROJECT": "other-project", "TFMS_REGION": "europe-west1"})
    assert (defaults.project, defaults.region) == ("other-project", "europe-west1")
    with pytest.raises(SettingInvalid, match=r"^TFMS_PROJECT: .*\(got 'Bad_Project'"):
        Defaults.from_env({"TFMS_PROJECT": "Bad_Project"})


def test_bad_env_is_one_line_from_the_console_script(manifest: Path, tmp_path: Path) -> None:
    """The whole process, as a user runs it: the message is the only stderr output."""
    env = {"PATH": "/usr/bin:/bin", "TFMS_EMULATOR_PORT": "abc", "HOME": str(tmp_path)}
    ok = subprocess.run([sys.executable, "-m", "tfms.cli.main", "validate", str(manifest)], env=env,
                        capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout.strip(), ok.stderr) == (0, f"{manifest}: ok", "")
    bad = subprocess.run([sys.executable, "-m", "tfms.cli.main", "emulator"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert (bad.returncode, bad.stderr) == (2, "error: TFMS_EMULATOR_PORT must be a port number 0-65535, got 'abc'\n")


def test_missing_credentials_is_one_line(manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    code, _, err = run(["apply", "--no-check-model", "-f", str(manifest)], capsys)
    assert code == 2
    line = _error_line(err)
    assert line.startswith("error: no Application Default Credentials found;")
    assert "--endpoint / TFMS_CLOUDRUN_ENDPOINT" in line


@pytest.mark.parametrize("command", [["apply", "--no-check-model"], ["diff"], ["rollout", "status"]])
def test_an_endpoint_given_as_a_url_is_named_as_such(command: list[str], manifest: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    canary = tmp_path / "canary.yaml"
    canary.write_text(yaml.safe_dump(base_object(rollout={"strategy": "canary"})))
    target = canary if command[0] == "rollout" else manifest
    code, _, err = run([*command, "--endpoint", "http://127.0.0.1:8089", "-f", str(target)], capsys)
    assert code == 2
    assert _error_line(err) == ("error: the Cloud Run endpoint is HOST:PORT of a gRPC server, not a URL "
                                "(got 'http://127.0.0.1:8089'; check --endpoint / TFMS_CLOUDRUN_ENDPOINT)")


def test_unreachable_endpoint_is_named_at_once(manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # closed again: connections are refused
    started = time.monotonic()
    code, out, err = run(["apply", "--no-check-model", "--endpoint", endpoint, "-f", str(manifest)], capsys)
    assert code == 2
    assert _error_line(err).startswith(f"error: cannot reach Cloud Run at {endpoint}: nothing answered")
    assert out == ""
    assert time.monotonic() - started < 8  # the client's own retries took 10 s and ended in RetryError


def test_retry_error_becomes_transient_with_its_last_cause() -> None:
    exc = gexc.RetryError("Timeout of 10.0s exceeded", gexc.ServiceUnavailable("failed to connect to all addresses"))
    got = translate(exc, "get projects/p/locations/r/services/s")
    assert isinstance(got, Transient)
    assert str(got) == "get projects/p/locations/r/services/s: failed to connect to all addresses"


# --- ports already in use: a second emulator must fail, not share the port (SO_REUSEPORT) ---

@pytest.fixture
def running_emulator() -> Iterator[int]:
    from tfms.emulator import Emulator

    emulator = Emulator()
    address = emulator.start("127.0.0.1", 0)
    yield int(address.rsplit(":", 1)[1])
    emulator.stop()


@pytest.mark.parametrize("argv", [
    pytest.param(["emulator", "--rest-port", "off", "--port", "PORT"], id="emulator"),
    pytest.param(["up", "--port", "PORT", "FILE"], id="up"),
])
def test_second_emulator_on_a_busy_port_fails(argv: list[str], running_emulator: int, manifest: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(running_emulator) if a == "PORT" else str(manifest) if a == "FILE" else a for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert _error_line(err) == (f"error: cannot listen on 127.0.0.1:{running_emulator} (gRPC): "
                                f"port {running_emulator} is already in use")


def test_grpc_itself_refuses_a_shared_port(running_emulator: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the pre-check, gRPC's own bind must fail: the server is created with so_reuseport 0."""
    from tfms.emulator import Emulator
    from tfms.emulator import server as server_module

    real = server_module._bind_problem
    calls: list[int] = []

    def skip_first(host: str, port: int) -> str:
        calls.append(port)
        return "" if len(calls) == 1 else real(host, port)

    monkeypatch.setattr(server_module, "_bind_problem", skip_first)
    second = Emulator()
    with pytest.raises(server_module.PortUnavailable, match=f"port {running_emulator} is already in use"):
        second.start("127.0.0.1", running_emulator)
    second.stop()
    assert calls == [running_emulator, running_emulator]  # the pre-check, then the diagnosis after gRPC failed


def test_busy_rest_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        code, _, err = run(["emulator", "--port", "0", "--rest-port", str(busy)], capsys)
    assert code == 2
    assert _error_line(err) == f"error: cannot listen on 127.0.0.1:{busy} (REST): port {busy} is already in use"


def test_a_reader_that_stops_early_is_not_an_error(manifest: Path) -> None:
    """`tfms render FILE | head -1`: the pipe closes before tfms writes; no error line, no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before tfms writes a byte
    try:
        done = subprocess.run([sys.executable, "-m", "tfms.cli.main", "render", str(manifest), "-o", "yaml"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")
