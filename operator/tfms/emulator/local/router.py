"""The local stand-in for Cloud Run's front end: one URL per service and per tag.

Each URL is its own loopback listener, allocated once and stable for the process lifetime
(like a service's `run.app` URL), served by aiohttp on a dedicated thread so gRPC threads
never wait on request traffic. Splits use smooth weighted round robin: deterministic, and
over any window of `sum(percent)` consecutive requests every revision gets exactly its
percent, which lets tests and `tfms up` users check a split by counting.

Route tables are immutable snapshots swapped in with one dict assignment, so readers (the
loop thread) need no lock and a split change is atomic; the round-robin cursor is only
touched on the loop thread.

Every request given to a revision is recorded in `metrics` (status, latency from arrival to
the last byte relayed), as Cloud Run's front end records request_count and request_latencies;
a 503 for a revision that is not running counts against that revision.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tfms.emulator.local.loop import LoopThread
from tfms.emulator.local.metrics import RouterMetrics

T = TypeVar("T")
log = logging.getLogger(__name__)

REVISION_HEADER = "X-Tfms-Revision"
ROUTER_HOST_ENV = "TFMS_ROUTER_HOST"
DEFAULT_HOST = "127.0.0.1"

# RFC 9110 §7.6.1 connection-specific fields, plus `Expect`, which we answer ourselves.
_HOP_BY_HOP = (
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
)
_REQUEST_ONLY_DROPPED = ("Expect",)
_BUFFER_LIMIT = 256 * 1024  # bodies up to this size are relayed in one piece, larger ones streamed
_NO_BODY_STATUSES = frozenset({204, 304})


def swrr_schedule(weights: Iterable[tuple[str, int]]) -> tuple[str, ...]:
    """One period of smooth weighted round robin (nginx's algorithm) over `weights`.

    Duplicate names are merged and non-positive weights dropped. The period has
    `sum(weights) / gcd(weights)` entries; repeating it gives the request sequence.
    """
    merged: dict[str, int] = {}
    for name, weight in weights:
        if weight > 0:
            merged[name] = merged.get(name, 0) + weight
    if not merged:
        return ()
    names = list(merged)
    divisor = math.gcd(*merged.values())
    reduced = [merged[n] // divisor for n in names]
    total = sum(reduced)
    current = [0] * len(names)
    schedule: list[str] = []
    for _ in range(total):
        for i, weight in enumerate(reduced):
            current[i] += weight
        best = max(range(len(names)), key=current.__getitem__)  # first maximum wins ties
        current[best] -= total
        schedule.append(names[best])
    return tuple(schedule)


class _Balancer:
    """Cycles through a precomputed SWRR period: O(1) and allocation-free per request."""

    __slots__ = ("_cursor", "_schedule", "weights")

    def __init__(self, weights: tuple[tuple[str, int], ...]) -> None:
        self.weights = weights
        self._schedule = swrr_schedule(weights)
        self._cursor = 0

    def pick(self) -> str | None:
        if not self._schedule:
            return None
        revision = self._schedule[self._cursor]
        self._cursor = (self._cursor + 1) % len(self._schedule)
        return revision


@dataclass(frozen=True)
class _Route:
    balancer: _Balancer
    tags: Mapping[str, str]


@dataclass(frozen=True)
class _Backend:
    revision_id: str
    origin: str  # http://host:port


def _unavailable(message: str) -> web.Response:
    return web.Response(status=503, text=f"Service Unavailable: {message}\n")


def _hop_by_hop(headers: CIMultiDictProxy[str]) -> list[str]:
    """Names of connection-specific fields present in `headers` (usually none or one)."""
    present = [h for h in _HOP_BY_HOP if h in headers]
    if "Connection" in headers:
        for value in headers.getall("Connection"):
            present.extend(token.strip() for token in value.split(",") if token.strip())
    return present


def _request_headers(headers: CIMultiDictProxy[str]) -> Mapping[str, str]:
    drop = _hop_by_hop(headers)
    drop.extend(h for h in _REQUEST_ONLY_DROPPED if h in headers)
    if not drop:
        return headers  # the common case: forward as is, no copy
    out = CIMultiDict(headers)
    for name in drop:
        out.popall(name, None)
    return out


class Router:
    """Serves service and tag URLs and forwards each request to a revision's host port.

    `host` defaults to $TFMS_ROUTER_HOST, else 127.0.0.1. `backend_host` is where
    revisions listen. Thread-safe; every method may be called from any thread but the
    router's own.
    """

    def __init__(self, host: str | None = None, *, backend_host: str = DEFAULT_HOST) -> None:
        self.host = host or os.environ.get(ROUTER_HOST_ENV) or DEFAULT_HOST
        self._url_host = self._url_host_for(self.host)
        self._backend_host = backend_host
        self._lock = threading.Lock()  # serialises writers; readers rely on atomic dict ops
        self._routes: dict[str, _Route] = {}
        self._backends: dict[str, _Backend] = {}
        self._listeners: dict[tuple[str, str | None], int] = {}
        self._runners: list[web.ServerRunner] = []
        self._starting: list[concurrent.futures.Future[None]] = []
        self._closed = False
        self._thread = LoopThread("tfms-router")
        self.metrics = RouterMetrics(self._on_loop)
        self._session: aiohttp.ClientSession = self._thread.call(self._make_session())

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the router's loop (metrics readers): the recorder there never locks."""
        if self._thread.alive and not self._thread.in_loop_thread:
            async def run() -> T:
                return fn()

            coro = run()
            try:
                future = self._thread.submit(coro)
            except RuntimeError:  # the loop closed meanwhile: nothing records any more
                coro.close()
            else:
                return future.result(10.0)
        return fn()

    @staticmethod
    def _url_host_for(host: str) -> str:
        if host in ("", "0.0.0.0", "::"):
            return DEFAULT_HOST
        return f"[{host}]" if ":" in host else host

    async def _make_session(self) -> aiohttp.ClientSession:
        # One pooled keep-alive session for all backends. No cookie jar (clients must not
        # share cookies), no redirects followed, bodies relayed as encoded.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
            skip_auto_headers=(hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING),
        )

    # -- URLs -------------------------------------------------------------------------

    def service_url(self, service: str) -> str:
        return self._url(service, None)

    def tag_url(self, service: str, tag: str) -> str:
        return self._url(service, tag)

    def _url(self, service: str, tag: str | None) -> str:
        key = (service, tag)
        with self._lock:
            port = self._listeners.get(key)
            if port is None:
                if self._closed:
                    raise RuntimeError("router is closed")
                # Bound and listening before we return: connections queue in the backlog
                # until the loop starts accepting, so the URL works immediately.
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                sock = socket.create_server((self.host, 0), family=family, backlog=512)
                port = sock.getsockname()[1]
                self._listeners[key] = port
                handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
                if tag is None:
                    handler = functools.partial(self._serve_service, service)
                else:
                    handler = functools.partial(self._serve_tag, service, tag)
                self._starting.append(self._thread.submit(self._listen(sock, handler)))
        return f"http://{self._url_host}:{port}"

    async def _listen(
        self, sock: socket.socket, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
    ) -> None:
        runner = web.ServerRunner(web.Server(handler, access_log=None), shutdown_timeout=1.0)
        self._runners.append(runner)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            raise

    # -- Tables -----------------------------------------------------------------------

    def set_routes(self, service: str, split: Iterable[tuple[str, int]], tags: Mapping[str, str]) -> None:
        """Replace the service's split and tags in one step.

        An unchanged split keeps its round-robin position, so a control plane re-applying
        the same routes does not skew the sequence.
        """
        weights = tuple((rev, pct) for rev, pct in split if pct > 0)
        with self._lock:
            old = self._routes.get(service)
            balancer = old.balancer if old is not None and old.balancer.weights == weights else None
            self._routes[service] = _Route(balancer or _Balancer(weights), dict(tags))

    def clear_routes(self, service: str) -> None:
        with self._lock:
            self._routes.pop(service, None)

    def set_backend(self, revision: str, revision_id: str, port: int) -> None:
        """Make `revision` reachable at `port` on the backend host."""
        with self._lock:
            self._backends[revision] = _Backend(revision_id, f"http://{self._backend_host}:{port}")

    def remove_backend(self, revision: str) -> None:
        with self._lock:
            self._backends.pop(revision, None)

    # -- Request path -----------------------------------------------------------------

    async def _serve_service(self, service: str, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get(service)
        revision = route.balancer.pick() if route is not None else None
        if revision is None:
            return _unavailable("no revision of this service is receiving traffic")
        return await self._measured(request, revision)

    async def _serve_tag(self, service: str, tag: str, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get(service)
        revision = route.tags.get(tag) if route is not None else None
        if revision is None:
            return _unavailable(f"no revision is tagged {tag!r}")
        return await self._measured(request, revision)

    async def _measured(self, request: web.BaseRequest, revision: str) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500  # what aiohttp answers when the handler raises
        try:
            response = await self._forward(request, revision)
            status = response.status
            return response
        finally:
            self.metrics.record(revision, status, time.perf_counter() - started)

    async def _forward(self, request: web.BaseRequest, revision: str) -> web.StreamResponse:
        backend = self._backends.get(revision)
        if backend is None:
            return _unavailable(f"revision {revision.rsplit('/', 1)[-1]} is not running")
        data: bytes | aiohttp.StreamReader | None = None
        if request.body_exists:
            if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            length = request.content_length
            data = await request.read() if length is not None and length <= _BUFFER_LIMIT else request.content
        for attempt in (1, 2):
            try:
                async with self._session.request(
                    request.method,
                    URL(backend.origin + request.raw_path, encoded=True),
                    headers=_request_headers(request.headers),
                    data=data,
                    allow_redirects=False,
                ) as upstream:
                    return await self._relay(request, upstream, backend)
            except aiohttp.ServerDisconnectedError:
                # A pooled keep-alive connection the backend closed while idle. aiohttp only
                # retries idempotent methods; TF Serving's POSTs (predict) are side-effect free,
                # so replay once when the body can be replayed.
                if attempt == 1 and not isinstance(data, aiohttp.StreamReader):
                    continue
                return _unavailable(f"revision {backend.revision_id} closed the connection")
            except (aiohttp.ClientConnectionError, ConnectionError) as exc:
                log.debug("forwarding to %s failed: %r", backend.revision_id, exc)
                return _unavailable(f"revision {backend.revision_id} did not respond ({type(exc).__name__})")
            except TimeoutError:
                return web.Response(status=504, text="Gateway Timeout\n")
            except aiohttp.ClientError as exc:
                return web.Response(status=502, text=f"Bad Gateway: {exc}\n")
        raise AssertionError("unreachable")

    async def _relay(
        self, request: web.BaseRequest, upstream: aiohttp.ClientResponse, backend: _Backend
    ) -> web.StreamResponse:
        headers = CIMultiDict(upstream.headers)
        for name in _hop_by_hop(upstream.headers):
            headers.popall(name, None)
        headers[REVISION_HEADER] = backend.revision_id
        length = upstream.content_length
        buffered = (
            length is not None
            and length <= _BUFFER_LIMIT
            and request.method != hdrs.METH_HEAD
            and upstream.status not in _NO_BODY_STATUSES
        )
        if buffered:
            body = await upstream.read()
            headers.popall(hdrs.CONTENT_LENGTH, None)  # recomputed from the body
            return web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=body)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            # Headers are gone already: the only honest signal left is a cut connection.
            log.debug("relaying from %s broke off: %r", backend.revision_id, exc)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    # -- Lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and close the pool; URLs stop answering."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.alive:
            with contextlib.suppress(Exception):
                self._thread.call(self._shutdown(), timeout=10.0)
            self._thread.stop()

    async def _shutdown(self) -> None:
        with self._lock:
            starting = list(self._starting)
        # Listeners submitted just before close must be up before they can be torn down.
        await asyncio.gather(*(asyncio.wrap_future(f) for f in starting), return_exceptions=True)
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        await self._session.close()
