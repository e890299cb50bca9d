"""`serve_forever` as `tfms emulator` runs it: a process that prints its address and stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import grpc
import pytest
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

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


def test_context_manager_and_single_start() -> None:
    emulator = Emulator()
    with emulator as emu:
        assert emu.address.startswith("127.0.0.1:")
    with pytest.raises(RuntimeError):
        emulator.start()  # a stopped emulator does not restart
