"""The session-scoped ``kube`` fixture: one real API server stack for all tests that ask for it.

It never skips: a machine that cannot build the stack fails these tests with the bootstrap's
output, so a broken build cannot hide behind a green run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.kube.cluster import KubeCluster, KubeError, bootstrap, cache_dir
from tfms.emulator import Emulator, EmulatorConfig


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """etcd + shim + apiextensions-apiserver on loopback, ready; stopped after the session."""
    capture: Any = request.config.pluginmanager.getplugin("capturemanager")

    def echo(line: str) -> None:
        # A cold build takes minutes: show its progress live instead of a silent pytest.
        if "up to date" in line:
            return
        if capture is None:
            print(line, flush=True)
            return
        with capture.global_and_fixture_disabled():
            print(line, flush=True)

    cluster: KubeCluster | None = None
    try:
        cluster = KubeCluster(tmp_path_factory.mktemp("kube"), bootstrap(cache_dir(), echo=echo))
        cluster.start()
        failure = ""
    except KubeError as err:
        failure = str(err) if cluster is None else f"the API server stack did not start: {err}"
    try:
        if failure:  # failed outside the except block: no chained traceback around the logs
            pytest.fail(failure, pytrace=False)
        assert cluster is not None
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One Cloud Run emulator per module: revisions become ready after 0.1 s, as an operator sees them."""
    emu = Emulator(EmulatorConfig(ready_delay=0.1))
    emu.start()
    yield emu
    emu.stop()
