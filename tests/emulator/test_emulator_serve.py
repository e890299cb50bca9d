"""`serve_forever` as `tfms emulator` runs it: a process that prints its addresses and stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from tests.emulator.emulator_testkit import finish, rest_clients, template
from tfms.emulator import Emulator

SCRIPT = "from tfms.emulator import serve_forever; serve_forever('127.0.0.1', 0)"


def test_serve_forever_until_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("tfms emulator listening on 127.0.0.1:")
        address = line.rsplit(" ", 1)[-1].strip()
        channel = grpc.insecure_channel(address)
        client = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
        assert list(client.list_services(parent="projects/p/locations/us-central1")) == []
        channel.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


STATEFUL = (
    "import sys; from tfms.emulator import EmulatorConfig, serve_forever; "
    "serve_forever('127.0.0.1', 0, EmulatorConfig(state_file=sys.argv[1]), rest_port=0)"
)


def _serve(state: str) -> tuple[subprocess.Popen[str], str]:
    """Start `serve_forever` with REST and a state file; return the process and its REST URL."""
    proc = subprocess.Popen([sys.executable, "-c", STATEFUL, state], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("tfms emulator listening on ")
    rest = proc.stdout.readline()
    assert rest.startswith("tfms emulator REST on http://127.0.0.1:")
    assert proc.stdout.readline().startswith("tfms emulator control on http://127.0.0.1:")
    return proc, rest.rsplit(" ", 1)[-1].strip()


def test_out_of_process_rest_control_and_state(tmp_path: Path) -> None:
    """What `tfms emulator --rest-port 0 --state FILE` does: REST, the control API, a restart."""
    state = str(tmp_path / "state.json")
    proc, url = _serve(state)
    try:
        services, _ = rest_clients(url)
        created = finish(
            services.create_service(
                parent="projects/p/locations/us-central1", service_id="svc", service=run_v2.Service(template=template())
            )
        )
        request = urllib.request.Request(
            f"{url}/_emulator/fail-next",
            data=json.dumps({"method": "GetService", "code": "PERMISSION_DENIED"}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        with pytest.raises(exceptions.Forbidden):
            services.get_service(name=created.name)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc, url = _serve(state)
        services, _ = rest_clients(url)
        assert services.get_service(name=created.name) == created
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_context_manager_and_single_start() -> None:
    emulator = Emulator()
    with emulator as emu:
        assert emu.address.startswith("127.0.0.1:")
    with pytest.raises(RuntimeError):
        emulator.start()  # a stopped emulator does not restart
