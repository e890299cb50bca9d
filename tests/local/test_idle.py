"""Revisions with no traffic and no tag stop their model server, stay Ready, and start again
when routed, holding requests meanwhile (as Cloud Run scales a revision to zero and back)."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.conftest import SERVICE, RecordingEvents, make_launch, pid_alive, start, wait_until
from tfms.emulator.local import REVISION_HEADER, LocalExecutor
from tfms.emulator.local.executor import IDLE_ENV

A = f"{SERVICE}/revisions/svc-a"
B = f"{SERVICE}/revisions/svc-b"
IDLE_S = 0.3


@pytest.fixture
def executor(tmp_path: Path, fake_server: Path, events: RecordingEvents) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(run_dir=tmp_path / "run", runtime_command=[sys.executable, "-I", str(fake_server)],
                       stop_grace_s=3.0, idle_s=IDLE_S)
    ex.bind(events)
    try:
        yield ex
    finally:
        ex.close()


@pytest.fixture
def two_revisions(executor: LocalExecutor, events: RecordingEvents) -> LocalExecutor:
    for name in ("svc-a", "svc-b"):
        start(executor, events, make_launch(name, args=("--rest_api_port=8080", f"--model_name={name}"),
                                            env={"FAKE_STARTUP_DELAY_S": "0.5"}))
    return executor


def state(executor: LocalExecutor, revision: str) -> str:
    status = executor.revision_status(revision)
    assert status is not None
    return status.state


def pid(executor: LocalExecutor, revision: str) -> int:
    status = executor.revision_status(revision)
    assert status is not None and status.pid is not None
    return status.pid


def predict(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"{url}/v1/models/x", timeout=30) as resp:
        return resp.status, resp.headers[REVISION_HEADER], json.loads(resp.read())["model"]


def test_unrouted_revision_stops_and_starts_again_when_routed(two_revisions: LocalExecutor,
                                                              events: RecordingEvents) -> None:
    ex = two_revisions
    old_pid = pid(ex, B)
    ex.set_routes(SERVICE, "svc", [(A, 100), (B, 0)], {})
    wait_until(lambda: state(ex, B) == "idle", timeout=15, message="svc-b stopped for idleness")
    assert not pid_alive(old_pid) and state(ex, A) == "ready"
    assert events.outcomes[B] == ("ready",)  # no failure reported: Cloud Run still calls it Ready

    # Traffic comes back: the first request waits through the cold start instead of a 503.
    ex.set_routes(SERVICE, "svc", [(B, 100)], {})
    assert predict(ex.service_url(SERVICE, "svc")) == (200, "svc-b", "svc-b")
    assert state(ex, B) == "ready" and pid(ex, B) != old_pid
    assert events.outcomes[B] == ("ready",)
    # ...and A, now unrouted, goes to zero in turn.
    wait_until(lambda: state(ex, A) == "idle", timeout=15, message="svc-a stopped for idleness")


def test_requests_arriving_during_the_cold_start_all_wait_and_succeed(two_revisions: LocalExecutor) -> None:
    ex = two_revisions
    ex.set_routes(SERVICE, "svc", [(A, 100)], {})
    wait_until(lambda: state(ex, B) == "idle", timeout=15, message="svc-b stopped for idleness")
    ex.set_routes(SERVICE, "svc", [(A, 50), (B, 50)], {})
    url = ex.service_url(SERVICE, "svc")
    results: list[tuple[int, str, str]] = []
    threads = [threading.Thread(target=lambda: results.append(predict(url))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r[1] for r in results) == ["svc-a"] * 4 + ["svc-b"] * 4  # the split is not redrawn
    assert {r[0] for r in results} == {200}


def test_a_tagged_revision_at_zero_percent_keeps_running(two_revisions: LocalExecutor,
                                                         events: RecordingEvents) -> None:
    ex = two_revisions
    c = f"{SERVICE}/revisions/svc-c"
    start(ex, events, make_launch("svc-c", args=("--rest_api_port=8080", "--model_name=svc-c")))
    running = pid(ex, B)
    ex.set_routes(SERVICE, "svc", [(A, 100)], {"prev": B})
    # svc-c (no traffic, no tag) going to zero shows the idle time has passed for svc-b too.
    wait_until(lambda: state(ex, c) == "idle", timeout=15, message="svc-c stopped for idleness")
    assert state(ex, B) == "ready" and pid(ex, B) == running and pid_alive(running)
    assert _get(ex.tag_url(SERVICE, "svc", "prev"))[0] == 200


def test_stop_of_an_idle_revision_and_close_leave_nothing(two_revisions: LocalExecutor) -> None:
    ex = two_revisions
    ex.set_routes(SERVICE, "svc", [(A, 100)], {})
    wait_until(lambda: state(ex, B) == "idle", timeout=15, message="svc-b stopped for idleness")
    ex.stop_revision(B)
    wait_until(lambda: state(ex, B) == "stopped", timeout=15, message="svc-b stopped")
    ex.set_routes(SERVICE, "svc", [(B, 100)], {})  # a stopped (deleted) revision does not come back
    status, _, body = _get(ex.service_url(SERVICE, "svc"))
    assert status == 503 and b"svc-b is not running" in body


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(f"{url}/v1/models/x", timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.parametrize(("raw", "expected"), [("", 60.0), ("off", None), ("2.5", 2.5)])
def test_idle_setting(raw: str, expected: float | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(IDLE_ENV, raw)
    ex = LocalExecutor(run_dir=tmp_path)
    try:
        assert ex._idle_s == expected
    finally:
        ex.close()


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "inf", "nan"])
def test_bad_idle_setting_names_the_variable(raw: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(IDLE_ENV, raw)
    rule = rf"^\$TFMS_LOCAL_IDLE_SECONDS='{raw}': must be a number of seconds > 0, or off"
    with pytest.raises(ValueError, match=rule):
        LocalExecutor(run_dir=tmp_path)
