"""The router: exact SWRR splits, tag URLs, route updates, 503s, and faithful forwarding."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.local.conftest import SERVICE, RecordingEvents, make_launch, start, wait_until
from tfms.emulator.local import REVISION_HEADER, LocalExecutor, Router, swrr_schedule

A = f"{SERVICE}/revisions/svc-a"
B = f"{SERVICE}/revisions/svc-b"


def get(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def two_revisions(executor: LocalExecutor, events: RecordingEvents) -> Iterator[LocalExecutor]:
    start(executor, events, make_launch("svc-a", args=("--rest_api_port=8080", "--model_name=a")))
    start(executor, events, make_launch("svc-b", args=("--rest_api_port=8080", "--model_name=b")))
    yield executor


@pytest.mark.parametrize("weights", [[80, 20], [50, 30, 20], [1, 99], [34, 33, 33], [100], [10, 0, 90]])
def test_swrr_is_exact_over_any_window(weights: list[int]) -> None:
    split = [(f"r{i}", w) for i, w in enumerate(weights)]
    period = swrr_schedule(split)
    sequence = period * (300 // len(period) + 2)
    for begin in range(0, 200):
        counts = collections.Counter(sequence[begin : begin + 100])
        assert counts == {name: w for name, w in split if w}


def test_swrr_interleaves() -> None:
    assert "".join(swrr_schedule([("a", 80), ("b", 20)])) == "aabaa"


async def test_split_80_20_is_exact_over_1000_requests(two_revisions: LocalExecutor) -> None:
    two_revisions.set_routes(SERVICE, "svc", [(A, 80), (B, 20)], {})
    url = two_revisions.service_url(SERVICE, "svc")
    counts: collections.Counter[str] = collections.Counter()
    models: collections.Counter[str] = collections.Counter()

    async def worker(session: aiohttp.ClientSession, n: int) -> None:
        for _ in range(n):
            async with session.get(f"{url}/v1/models/x") as resp:
                assert resp.status == 200
                counts[resp.headers[REVISION_HEADER]] += 1
                models[(await resp.json())["model"]] += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session, 100) for _ in range(10)))
    assert counts == {"svc-a": 800, "svc-b": 200}
    assert models == {"a": 800, "b": 200}


def test_tag_urls_answer_only_from_their_revision(two_revisions: LocalExecutor) -> None:
    two_revisions.set_routes(SERVICE, "svc", [(A, 100)], {"stable": A, "canary": B})
    stable = two_revisions.tag_url(SERVICE, "svc", "stable")
    canary = two_revisions.tag_url(SERVICE, "svc", "canary")
    assert len({stable, canary, two_revisions.service_url(SERVICE, "svc")}) == 3
    for _ in range(10):
        assert get(stable)[1][REVISION_HEADER] == "svc-a"
        assert get(canary)[1][REVISION_HEADER] == "svc-b"
    # A tag that is moved follows its revision; a tag that is dropped answers 503.
    two_revisions.set_routes(SERVICE, "svc", [(A, 100)], {"stable": B})
    assert get(stable)[1][REVISION_HEADER] == "svc-b"
    status, _, body = get(canary)
    assert status == 503 and b"canary" in body
    assert two_revisions.tag_url(SERVICE, "svc", "canary") == canary  # stable for the process lifetime


def test_route_updates_take_effect(two_revisions: LocalExecutor) -> None:
    url = two_revisions.service_url(SERVICE, "svc")
    two_revisions.set_routes(SERVICE, "svc", [(A, 100)], {})
    assert {get(url)[1][REVISION_HEADER] for _ in range(5)} == {"svc-a"}
    two_revisions.set_routes(SERVICE, "svc", [(A, 0), (B, 100)], {})
    assert {get(url)[1][REVISION_HEADER] for _ in range(5)} == {"svc-b"}
    assert two_revisions.service_url(SERVICE, "svc") == url


def test_503_without_route_or_running_revision(two_revisions: LocalExecutor, events: RecordingEvents) -> None:
    url = two_revisions.service_url(SERVICE, "svc")
    status, _, body = get(url)
    assert status == 503 and body.startswith(b"Service Unavailable")
    two_revisions.set_routes(SERVICE, "svc", [(f"{SERVICE}/revisions/never", 100)], {})
    assert get(url)[0] == 503
    two_revisions.set_routes(SERVICE, "svc", [(A, 100)], {})
    assert get(url)[0] == 200
    two_revisions.stop_revision(A)
    assert get(url)[0] == 503


def test_revision_dying_after_ready_gets_503(two_revisions: LocalExecutor) -> None:
    two_revisions.set_routes(SERVICE, "svc", [(B, 100)], {})
    url = two_revisions.service_url(SERVICE, "svc")
    status, _, body = get(url)
    assert status == 200
    os.kill(json.loads(body)["pid"], signal.SIGKILL)
    wait_until(lambda: get(url)[0] == 503, message="router to notice the dead revision")
    wait_until(lambda: two_revisions.revision_status(B).state == "exited")  # type: ignore[union-attr]


async def test_forwarding_is_faithful(two_revisions: LocalExecutor) -> None:
    two_revisions.set_routes(SERVICE, "svc", [(A, 100)], {})
    url = two_revisions.service_url(SERVICE, "svc")
    small = b'{"instances": [1.0, 2.0]}'
    large = os.urandom(600 * 1024)  # above the buffering limit: streamed both ways
    async with aiohttp.ClientSession() as session:
        for body in (small, large):
            async with session.post(
                URL(f"{url}/v1/models/a:predict?x=1&y=%2F", encoded=True),
                data=body,
                headers={"X-Custom": "yes", "Connection": "keep-alive, X-Drop", "X-Drop": "1"},
            ) as resp:
                assert resp.status == 200
                assert resp.headers["X-Upstream"] == "fake" and resp.headers[REVISION_HEADER] == "svc-a"
                got: dict[str, Any] = await resp.json()
            assert got["method"] == "POST" and got["path"] == "/v1/models/a:predict?x=1&y=%2F"
            assert got["body_len"] == len(body) and got["body_sha256"] == hashlib.sha256(body).hexdigest()
            assert got["headers"]["x-custom"] == "yes"
            assert "x-drop" not in got["headers"] and "connection" not in got["headers"]
        async with session.get(f"{url}/big?n={2 * 1024 * 1024}") as resp:
            assert resp.status == 200 and len(await resp.read()) == 2 * 1024 * 1024


def test_router_alone_honours_router_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFMS_ROUTER_HOST", "127.0.0.2")
    router = Router()
    try:
        url = router.service_url("s")
        assert url.startswith("http://127.0.0.2:") and router.service_url("s") == url
        assert get(url)[0] == 503
    finally:
        router.close()
