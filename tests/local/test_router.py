"""The router: exact SWRR splits, tag URLs, route updates, 503s, and faithful forwarding."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import signal
import socket
import time
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
    medium = os.urandom(200 * 1024)  # read whole, though above the stream reader's 64 KiB limit
    large = os.urandom(600 * 1024)  # above the buffering limit: streamed both ways
    async with aiohttp.ClientSession() as session:
        for body in (small, medium, large):
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
        for size in (200 * 1024, 2 * 1024 * 1024):
            async with session.get(f"{url}/big?n={size}") as resp:
                assert resp.status == 200 and len(await resp.read()) == size


def test_router_alone_honours_router_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFMS_ROUTER_HOST", "127.0.0.2")
    router = Router()
    try:
        url = router.service_url("s")
        assert url.startswith("http://127.0.0.2:") and router.service_url("s") == url
        assert get(url)[0] == 503
    finally:
        router.close()


# -- The relay against an upstream the test controls ------------------------------------
#
# `Upstream` runs on the test's loop and the router on its own thread, so anything that
# blocks on the router (close) goes through `asyncio.to_thread`.

REV = "projects/p/locations/us-central1/services/relay/revisions/relay-a"
RELAY = "projects/p/locations/us-central1/services/relay"


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return body
        body += await reader.readexactly(size)
        assert await reader.readexactly(2) == b"\r\n"


async def _read_message(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response off `reader`: status, lower-cased headers, decoded body."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
    if headers.get("transfer-encoding") == "chunked":
        return status, headers, await _read_chunked(reader)
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    return status, headers, await reader.read()


class Upstream:
    """A revision whose behaviour each path picks; counts the connections the router opens.

    /echo answers what it saw; /chunked answers in chunks; /eof ends its body by closing;
    /idle-close answers then closes the idle connection; /close-next closes instead of
    answering a second request on one connection (a keep-alive race); /die closes without
    answering; /cut sends half its body then closes; /slow answers after 0.3 s.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.seen: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        on_this_connection = 0
        try:
            while True:
                try:
                    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                except asyncio.IncompleteReadError:
                    return
                on_this_connection += 1
                method, target, _ = lines[0].split(" ")
                headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
                if headers.get("transfer-encoding") == "chunked":
                    body = await _read_chunked(reader)
                else:
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                path = target.split("?")[0]
                self.seen.append({"method": method, "target": target, "headers": headers, "body": body})
                if path == "/die" or (path == "/close-next" and on_this_connection > 1):
                    return
                if path == "/slow":
                    await asyncio.sleep(0.3)
                if path == "/chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for piece in (b"hello ", body, b" bye"):
                        if piece:
                            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                            await writer.drain()
                    writer.write(b"0\r\nX-Trailer: t\r\n\r\n")
                elif path == "/eof":
                    writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil " + body)
                    return
                elif path == "/cut":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 500)
                    await writer.drain()
                    return
                else:
                    payload = json.dumps({"target": target, "headers": headers, "body_len": len(body),
                                          "body_sha256": hashlib.sha256(body).hexdigest()}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                                 b"Connection: keep-alive\r\n\r\n%b" % (len(payload), payload))
                await writer.drain()
                if path == "/idle-close":
                    return
        finally:
            writer.close()


@pytest.fixture
async def relay() -> Any:
    """(router, upstream, (host, port) of the service URL) with the upstream as its only revision."""
    router = Router()
    async with Upstream() as upstream:
        router.set_backend(REV, "relay-a", upstream.port)
        router.set_routes(RELAY, [(REV, 100)], {})
        url = URL(router.service_url(RELAY))
        try:
            yield router, upstream, (url.host, url.port)
        finally:
            await asyncio.to_thread(router.close)


async def _exchange(address: Any, raw: bytes, responses: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(raw)
        return [await _read_message(reader) for _ in range(responses)]
    finally:
        writer.close()


def _stats(router: Router) -> dict[str, Any]:
    now = time.time()
    return router.metrics.stats(REV, now - 60, now + 1)


async def test_pipelined_requests_are_answered_in_order(relay: Any) -> None:
    router, upstream, address = relay
    raw = b"".join(
        b"POST /echo?n=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (i, len(b"b" * i), b"b" * i)
        for i in range(1, 6)
    )
    answers = await _exchange(address, raw, responses=5)
    assert [json.loads(body)["target"] for _, _, body in answers] == [f"/echo?n={i}" for i in range(1, 6)]
    assert [json.loads(body)["body_len"] for _, _, body in answers] == [1, 2, 3, 4, 5]
    assert all(h[REVISION_HEADER.lower()] == "relay-a" for _, h, _ in answers)
    assert upstream.connections == 1
    assert _stats(router)["requests"] == 5


async def test_upstream_connections_are_reused_across_clients(relay: Any) -> None:
    _, upstream, address = relay
    for _ in range(3):  # a new client connection each time, sequentially
        answers = await _exchange(address, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n" * 4, responses=4)
        assert [status for status, _, _ in answers] == [200] * 4
    assert upstream.connections == 1
    # Hop-by-hop fields are not forwarded and no body framing is invented for a GET.
    assert "connection" not in upstream.seen[0]["headers"] and "content-length" not in upstream.seen[0]["headers"]


async def test_chunked_bodies_both_ways(relay: Any) -> None:
    _, upstream, address = relay
    raw = (b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nworld\r\n3\r\n!!!\r\n0\r\n\r\n"
           b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection stays in step after a chunked body
    (status, headers, body), (status2, _, _) = await _exchange(address, raw, responses=2)
    assert status == status2 == 200
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert body == b"hello world!!! bye"
    assert upstream.seen[0]["headers"]["transfer-encoding"] == "chunked" and upstream.seen[0]["body"] == b"world!!!"


async def test_large_chunked_upload_streams_through(relay: Any) -> None:
    _, upstream, address = relay
    payload = os.urandom(1024 * 1024)

    async def pieces() -> Any:
        for i in range(0, len(payload), 100_000):
            yield payload[i : i + 100_000]

    async with aiohttp.ClientSession() as session, session.post(
        f"http://{address[0]}:{address[1]}/echo", data=pieces()
    ) as resp:
        assert resp.status == 200
        got = await resp.json()
    assert got["body_len"] == len(payload) and got["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert upstream.seen[0]["headers"]["transfer-encoding"] == "chunked"  # streamed, never buffered whole


async def test_close_delimited_response_is_chunked_or_closed(relay: Any) -> None:
    _, _, address = relay
    # An HTTP/1.1 client gets it chunked and keeps its connection.
    (status, headers, body), (status2, _, _) = await _exchange(
        address, b"POST /eof HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET /echo HTTP/1.1\r\n\r\n", responses=2
    )
    assert (status, status2, body, headers["transfer-encoding"]) == (200, 200, b"until ok", "chunked")
    # An HTTP/1.0 client gets the body as is, ended by the router closing.
    [(status, headers, body)] = await _exchange(address, b"POST /eof HTTP/1.0\r\nContent-Length: 2\r\n\r\nok")
    assert (status, body) == (200, b"until ok") and "transfer-encoding" not in headers
    assert headers["connection"] == "close"


async def test_upstream_closing_an_idle_kept_alive_connection(relay: Any) -> None:
    _, upstream, address = relay
    assert (await _exchange(address, b"GET /idle-close HTTP/1.1\r\n\r\n"))[0][0] == 200
    await asyncio.sleep(0.05)  # the router sees the EOF on its pooled connection
    assert (await _exchange(address, b"GET /echo HTTP/1.1\r\n\r\n"))[0][0] == 200
    assert upstream.connections == 2


async def test_upstream_closing_as_a_reused_connection_is_written_replays_once(relay: Any) -> None:
    router, upstream, address = relay
    assert (await _exchange(address, b"GET /close-next HTTP/1.1\r\n\r\n"))[0][0] == 200
    # The pooled connection looks alive, but the revision closes it instead of answering:
    # the router replays the (buffered) request on a fresh connection.
    [(status, _, body)] = await _exchange(address, b"POST /close-next HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert status == 200 and json.loads(body)["body_len"] == 3
    assert upstream.connections == 2 and len(upstream.seen) == 3
    assert _stats(router)["errors"] == 0


async def test_revision_dying_mid_request_is_a_counted_503(relay: Any) -> None:
    router, upstream, address = relay
    [(status, _, body)] = await _exchange(address, b"POST /die HTTP/1.1\r\nContent-Length: 1\r\n\r\nx")
    assert status == 503 and body.startswith(b"Service Unavailable: revision relay-a")
    assert [seen["target"] for seen in upstream.seen] == ["/die"]  # it had the request when it died
    assert _stats(router)["errors"] == 1
    # A revision cut off mid-body: the headers are gone, so the client's connection is cut,
    # and the request still counts as a 5xx.
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"GET /cut HTTP/1.1\r\n\r\n")
    with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
        await _read_message(reader)
    writer.close()
    stats = _stats(router)
    assert stats["requests"] == 2 and stats["errors"] == 2


async def test_revision_not_listening_is_a_counted_503(relay: Any) -> None:
    router, _, address = relay
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        router.set_backend(REV, "relay-a", sock.getsockname()[1])  # bound, never listening: refused
        [(status, _, body)] = await _exchange(address, b"GET /echo HTTP/1.1\r\n\r\n")
    assert status == 503 and b"did not respond" in body
    stats = _stats(router)
    assert stats["requests"] == 1 and stats["errors"] == 1


async def test_expect_continue_and_headers_on_the_way(relay: Any) -> None:
    _, upstream, address = relay
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
                 b"Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n")
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"body")
    status, _, body = await _read_message(reader)
    writer.close()
    assert status == 200 and json.loads(body)["body_len"] == 4
    seen = upstream.seen[0]["headers"]
    assert seen["x-keep"] == "2" and seen["host"] == "h"
    assert not {"expect", "x-drop", "connection"} & set(seen)


async def test_malformed_requests_get_400(relay: Any) -> None:
    _, upstream, address = relay
    for raw in (b"GET /echo\r\n\r\n", b"GET /echo HTTP/1.1\r\nBad Header: x\r\n\r\n",
                b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"):
        [(status, headers, _)] = await _exchange(address, raw)
        assert status == 400 and headers["connection"] == "close"
    assert upstream.seen == []


async def test_close_lets_requests_in_flight_finish(relay: Any) -> None:
    router, _, address = relay
    idle_reader, idle_writer = await asyncio.open_connection(*address)
    idle_writer.write(b"GET /echo HTTP/1.1\r\n\r\n")
    assert (await _read_message(idle_reader))[0] == 200
    busy_reader, busy_writer = await asyncio.open_connection(*address)
    busy_writer.write(b"GET /slow HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.1)  # in flight at the upstream
    closing = asyncio.create_task(asyncio.to_thread(router.close))
    status, headers, _ = await _read_message(busy_reader)
    assert status == 200 and headers["connection"] == "close"
    assert await idle_reader.read() == b""  # the idle keep-alive connection was closed
    await closing
    with pytest.raises(OSError):
        await asyncio.open_connection(*address)
    idle_writer.close()
    busy_writer.close()


def test_chunked_framer_is_incremental() -> None:
    from tfms.emulator.local.router import _BadMessage, _Chunked

    wire = b"5;name=v\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT"
    for piece in (len(wire), 1, 3):  # whole, byte by byte, and split mid-line and mid-data
        reframed = b"5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
        for reframe, expected in ((True, reframed), (False, b"hello world!")):
            framer, out, rest = _Chunked(reframe), b"", None
            for i in range(0, len(wire), piece):
                got, rest = framer.feed(wire[i : i + piece])
                out += got
                if rest is not None:  # the body ended: what follows belongs to the next message
                    rest += wire[i + piece :]
                    break
            assert (out, rest) == (expected, b"NEXT")
    for bad in (b"zz\r\n", b"3\r\nabcX\r\n", b"-1\r\n"):
        with pytest.raises(_BadMessage):
            _Chunked(True).feed(bad)
