"""Fixtures for local mode: a fake model server, an event recorder, an executor.

The fake stands in for `python -m tfms.runtime` so these tests need neither tensorflow nor
the runtime: it parses TF Serving's flags (last duplicate wins, like the real server),
honours TFMS_RUNTIME_PORT_MAP/TFMS_RUNTIME_HOST, can stall or crash on request (env
FAKE_STARTUP_DELAY_S, FAKE_EXIT_CODE), and answers every request with what it saw.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tfms.emulator.executor import ContainerSpec, RevisionLaunch
from tfms.emulator.local import LocalExecutor

FAKE_SERVER = r'''
import argparse, hashlib, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8500)
parser.add_argument("--rest_api_port", type=int, default=0)
parser.add_argument("--model_name", default="")
parser.add_argument("--model_base_path", default="")
parser.add_argument("--model_config_file", default="")
opts, _ = parser.parse_known_args()

print("fake model server starting", flush=True)
if "FAKE_EXIT_CODE" in os.environ:
    for i in range(30):
        print(f"log line {i}", file=sys.stderr)
    print("fatal: could not load the model", file=sys.stderr, flush=True)
    sys.exit(int(os.environ["FAKE_EXIT_CODE"]))
time.sleep(float(os.environ.get("FAKE_STARTUP_DELAY_S", "0")))

port_map = {}
for pair in filter(None, os.environ.get("TFMS_RUNTIME_PORT_MAP", "").split(",")):
    container_port, host_port = pair.split(":")
    port_map[int(container_port)] = int(host_port)
rest_port = port_map.get(opts.rest_api_port, opts.rest_api_port)
if rest_port == 0:  # REST not exposed: like TF Serving with REST off, serve nothing
    print("REST port not bound", flush=True)
    while True:
        time.sleep(3600)

config = None
if opts.model_config_file:
    with open(opts.model_config_file) as f:
        config = f.read()
ENV_KEYS = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", "TMPDIR", "PATH", "MODEL_NAME",
            "MODEL_BASE_PATH", "TFMS_RUNTIME_PORT_MAP", "TFMS_RUNTIME_HOST", "TFMS_MODEL_CONFIG", "EXTRA")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/big"):
            payload = b"x" * int(self.path.split("=")[1])
            content_type = "application/octet-stream"
        else:
            payload = json.dumps({
                "model": opts.model_name,
                "model_base_path": opts.model_base_path,
                "revision": os.environ.get("K_REVISION"),
                "args": sys.argv[1:],
                "env": {k: os.environ.get(k) for k in ENV_KEYS},
                "config": config,
                "config_path": opts.model_config_file,
                "pid": os.getpid(),
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }).encode()
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Upstream", "fake")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer


server = ThreadingHTTPServer((os.environ.get("TFMS_RUNTIME_HOST", "127.0.0.1"), rest_port), Handler)
server.daemon_threads = True
print(f"serving {opts.model_name} on {rest_port}", flush=True)
server.serve_forever()
'''

SERVICE = "projects/p/locations/us-central1/services/svc"
SERVING_ARGS = ("--port=8500", "--rest_api_port=8080")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, message: str = "condition") -> None:
    """Poll `condition` with a short backoff; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes once nothing runs in it.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class RecordingEvents:
    """A RevisionEvents that remembers every outcome and the thread it arrived on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.outcomes: dict[str, tuple[str, ...]] = {}
        self.threads: list[int] = []

    def revision_ready(self, revision: str) -> None:
        self._record(revision, ("ready",))

    def revision_failed(self, revision: str, reason: str, message: str) -> None:
        self._record(revision, ("failed", reason, message))

    def _record(self, revision: str, outcome: tuple[str, ...]) -> None:
        with self._cond:
            self.outcomes[revision] = outcome
            self.threads.append(threading.get_ident())
            self._cond.notify_all()

    def wait(self, revision: str, timeout: float = 15.0) -> tuple[str, ...]:
        with self._cond:
            if not self._cond.wait_for(lambda: revision in self.outcomes, timeout):
                pytest.fail(f"no outcome for {revision} within {timeout}s")
            return self.outcomes[revision]


def make_launch(
    revision_id: str,
    *,
    service: str = SERVICE,
    image: str = "tensorflow/serving:2.19.0",
    command: tuple[str, ...] = ("tensorflow_model_server",),
    args: tuple[str, ...] = (*SERVING_ARGS, "--model_name=half_plus_two", "--model_base_path=/abs/models/hpt"),
    env: dict[str, str] | None = None,
    port: int = 8080,
    startup_timeout_s: float = 15.0,
) -> RevisionLaunch:
    service_id = service.rsplit("/", 1)[-1]
    return RevisionLaunch(
        service=service,
        service_id=service_id,
        revision=f"{service}/revisions/{revision_id}",
        revision_id=revision_id,
        container=ContainerSpec(
            image=image, command=command, args=args, env=tuple((env or {}).items()), port=port
        ),
        startup_timeout_s=startup_timeout_s,
    )


@pytest.fixture(scope="session")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fake") / "fake_model_server.py"
    path.write_text(FAKE_SERVER)
    return path


@pytest.fixture
def events() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture
def executor(tmp_path: Path, fake_server: Path, events: RecordingEvents) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(run_dir=tmp_path / "run", runtime_command=[sys.executable, "-I", str(fake_server)],
                       stop_grace_s=3.0)
    ex.bind(events)
    try:
        yield ex
    finally:
        ex.close()


def start(executor: LocalExecutor, events: RecordingEvents, launch: RevisionLaunch) -> int:
    """Launch and wait until ready; returns the revision's host port."""
    executor.launch(launch)
    outcome = events.wait(launch.revision)
    assert outcome == ("ready",), outcome
    status = executor.revision_status(launch.revision)
    assert status is not None and status.host_port is not None
    return status.host_port
