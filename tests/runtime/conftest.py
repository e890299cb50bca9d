"""Fixtures for tfms.runtime: server subprocesses on free loopback ports, and models."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

HALF_PLUS_TWO = REPO / "manifests" / "examples" / "models" / "half_plus_two"
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class RuntimeProcess:
    """`python -m tfms.runtime ARGS` with its output in a log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfms.runtime", *args], stdout=self._log, stderr=subprocess.STDOUT, env=full_env
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_port(self, port: int, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"runtime exited with {self.proc.returncode} before opening {port}:\n{self.log()}")
            time.sleep(0.05)
        pytest.fail(f"runtime did not open port {port} within {timeout}s:\n{self.log()}")

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None and text not in self.log():
                pytest.fail(f"runtime exited ({self.proc.returncode}) without logging {text!r}:\n{self.log()}")
            time.sleep(0.05)
        pytest.fail(f"runtime never logged {text!r}:\n{self.log()}")

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"runtime ignored signal {sig}:\n{self.log()}")
        finally:
            self._log.close()


class Client:
    """Minimal HTTP client that sends raw paths untouched (for case and malformed URLs)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            data = body.encode() if isinstance(body, str) else body
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, Any]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def post(self, path: str, doc: Any) -> tuple[int, Any]:
        body = doc if isinstance(doc, (bytes, str)) else json.dumps(doc)
        status, _, raw = self.request("POST", path, body)
        return status, json.loads(raw)


def start_runtime(args: list[str], tmp: Path, port: int, env: dict[str, str] | None = None) -> RuntimeProcess:
    proc = RuntimeProcess(args, tmp / f"runtime-{port}.log", env)
    proc.wait_for_port(port)
    return proc
