"""A started emulator (simulated revisions), our backend connected to it, and a fake Cloud Storage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from tests.conftest import REPO
from tests.fakegcs import FakeGcs
from tfms.backends.cloudrun import CloudRun
from tfms.emulator import Emulator, EmulatorConfig

HPT = REPO / "manifests" / "examples" / "models" / "half_plus_two"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(ready_delay=0.0))
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
async def backend(emulator: Emulator) -> AsyncIterator[CloudRun]:
    api = CloudRun.connect(emulator.address)
    yield api
    await api.close()


@pytest.fixture
def raw_client(emulator: Emulator) -> Iterator[run_v2.ServicesClient]:
    """Someone else's client (a console user, another tool) on the same Cloud Run."""
    channel = grpc.insecure_channel(emulator.address)
    yield run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
    channel.close()


@pytest.fixture
def fake_gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGcs]:
    """A fake Cloud Storage holding half_plus_two at gs://example-bucket/models/hpt (versions 1, 2),
    with TFMS_STORAGE_ENDPOINT pointing the real client at it."""
    fake = FakeGcs()
    fake.upload_tree("example-bucket", "models/hpt", HPT)
    monkeypatch.setenv("TFMS_STORAGE_ENDPOINT", fake.url)
    yield fake
    fake.close()
