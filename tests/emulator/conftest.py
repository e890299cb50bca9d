"""Fixtures: a started emulator and the REAL google-cloud-run clients talking to it over loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulator.emulator_testkit import Api, ManualExecutor, clients
from tfms.emulator import Emulator, EmulatorConfig, SimulatedExecutor


@pytest.fixture
def executor() -> SimulatedExecutor:
    return SimulatedExecutor()


@pytest.fixture
def emulator(executor: SimulatedExecutor) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7), executor=executor) as emu:
        yield emu


@pytest.fixture
def api(emulator: Emulator) -> Iterator[Api]:
    channel, services, revisions = clients(emulator.address)
    yield Api(emulator, services, revisions)
    channel.close()


@pytest.fixture
def manual() -> ManualExecutor:
    return ManualExecutor()


@pytest.fixture
def manual_api(manual: ManualExecutor) -> Iterator[Api]:
    """An `Api` whose emulator runs the `manual` executor."""
    with Emulator(EmulatorConfig(seed=7), executor=manual) as emu:
        channel, services, revisions = clients(emu.address)
        yield Api(emu, services, revisions)
        channel.close()
