"""Every conformance test runs twice: the real client over gRPC, and over REST (`transport="rest"`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from tests.emulator.emulator_testkit import TRANSPORTS, Api, ManualExecutor, connect
from tfms.emulator import Emulator, EmulatorConfig, Executor

Factory = Callable[..., AbstractContextManager[Api]]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@contextlib.contextmanager
def running(transport: str, config: EmulatorConfig | None = None, executor: Executor | None = None) -> Iterator[Api]:
    emulator = Emulator(config or EmulatorConfig(seed=7), executor=executor)
    emulator.start(rest_port=0)
    try:
        with connect(emulator, transport) as api:
            yield api
    finally:
        emulator.stop()


@pytest.fixture
def cr(transport: str) -> Iterator[Api]:
    """The real client, over the parametrized transport, against a default emulator."""
    with running(transport) as api:
        yield api


@pytest.fixture
def make_cr(transport: str) -> Factory:
    """`with make_cr(EmulatorConfig(...)) as api:` for rules that need a knob (a small cap, a delay)."""

    def make(config: EmulatorConfig | None = None, executor: Executor | None = None) -> AbstractContextManager[Api]:
        return running(transport, config, executor)

    return make


@pytest.fixture
def held(transport: str) -> Iterator[tuple[Api, ManualExecutor]]:
    """An emulator whose revisions settle only when the test says so (to observe transient state)."""
    manual = ManualExecutor()
    with running(transport, EmulatorConfig(seed=7), manual) as api:
        yield api, manual
