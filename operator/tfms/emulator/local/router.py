"""The local stand-in for Cloud Run's front end: one URL per service and per tag.

Each URL is its own loopback listener, allocated once and stable for the process lifetime
(like a service's `run.app` URL), served on a dedicated event-loop thread so gRPC threads
never wait on request traffic. Splits use smooth weighted round robin: deterministic, and
over any window of `sum(percent)` consecutive requests every revision gets exactly its
percent, which lets tests and `tfms up` users check a split by counting.

Route tables are immutable snapshots swapped in with one dict assignment, so readers (the
loop thread) need no lock and a split change is atomic; the round-robin cursor is only
touched on the loop thread.

Requests are relayed by a small HTTP/1.1 proxy on asyncio protocols (`_Downstream` per client
connection, `_Upstream` per pooled keep-alive connection to a revision, `_Exchange` per
request): a general HTTP server plus client stack (aiohttp) cost more per request than a
small model's predict, so this parses only the request line and the fields that frame a
message, rewrites the connection-specific ones, and streams bodies through.

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
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tfms.emulator.listen import check_listenable
from tfms.emulator.local.loop import LoopThread
from tfms.emulator.local.metrics import RouterMetrics

T = TypeVar("T")
log = logging.getLogger(__name__)

REVISION_HEADER = "X-Tfms-Revision"
ROUTER_HOST_ENV = "TFMS_ROUTER_HOST"
DEFAULT_HOST = "127.0.0.1"

# RFC 9110 §7.6.1 connection-specific fields; with the framing fields (re-added by the relay)
# they are never forwarded as received. `Expect` is answered by the router itself.
_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
_REQUEST_DROPPED = _HOP_BY_HOP | {b"content-length", b"expect"}
_RESPONSE_DROPPED = _HOP_BY_HOP | {b"content-length", REVISION_HEADER.lower().encode()}
_BUFFER_LIMIT = 256 * 1024  # request bodies up to this size are read whole (and can be replayed)
_MAX_HEAD = 64 * 1024
_CONNECT_TIMEOUT_S = 5.0
_MAX_IDLE_PER_BACKEND = 64
_SHUTDOWN_GRACE_S = 1.0
_WAKE_POLL_S = 0.02  # how often a request held for a starting revision looks for its backend
_CLIENT_CLOSED = 499  # nginx's code for a client that left first: not the revision's failure
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ABSENT = -1  # no Content-Length
_CHUNKED = -2  # Transfer-Encoding: chunked


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
    address: tuple[str, int]
    header: bytes  # the X-Tfms-Revision line, pre-encoded


# -- HTTP/1.1 framing ------------------------------------------------------------------


class _BadMessage(Exception):
    """A message this relay cannot frame; `status` is what the client is told."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Head:
    """The parts of a message head the relay acts on; `lines` are the fields forwarded as is."""

    first: bytes
    lines: list[bytes]
    length: int  # >= 0, or _ABSENT / _CHUNKED
    tokens: frozenset[bytes]  # Connection options, lower-cased
    expect_continue: bool = False
    has_host: bool = False


def _parse_head(head: bytes, dropped: frozenset[bytes]) -> _Head:
    """Split a head into its first line and forwarded field lines, noting the framing.

    Request smuggling is refused the RFC 9112 way: conflicting Content-Lengths and
    whitespace before a field's colon are errors; Transfer-Encoding wins over Content-Length.
    """
    lines = head.split(b"\r\n")
    first = lines[0]
    kept: list[tuple[bytes, bytes]] = []
    length = _ABSENT
    chunked = False
    encodings = False
    tokens: set[bytes] = set()
    expect_continue = has_host = False
    for line in lines[1:]:
        if not line:
            continue
        colon = line.find(b":")
        name = line[:colon].lower()
        if colon <= 0 or b" " in name or b"\t" in name:
            raise _BadMessage(400, "Bad Request")
        if name not in dropped:
            kept.append((name, line))
            if name == b"host":
                has_host = True
            continue
        value = line[colon + 1 :].strip()
        if name == b"content-length":
            if not value.isdigit() or (length != _ABSENT and length != int(value)):
                raise _BadMessage(400, "Bad Request")
            length = int(value)
        elif name == b"transfer-encoding":
            encodings = True
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
        elif name == b"connection":
            tokens.update(t.strip() for t in value.lower().split(b","))
        elif name == b"expect":
            expect_continue = value.lower() == b"100-continue"
    if encodings:
        if not chunked:
            raise _BadMessage(400, "Bad Request")  # a body we cannot find the end of
        length = _CHUNKED
    forwarded = [line for name, line in kept if name not in tokens] if tokens else [line for _, line in kept]
    return _Head(first, forwarded, length, frozenset(tokens), expect_continue, has_host)


def _plain(status: int, reason: str, text: str, *, close: bool) -> bytes:
    """A response the router makes itself (errors), in Cloud Run's plain-text style."""
    body = text.encode()
    connection = "Connection: close\r\n" if close else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{connection}\r\n"
    )
    return head.encode("latin-1") + body


class _Framer:
    """Finds the end of a body as bytes arrive, yielding what to pass on.

    `feed` returns (bytes to forward, bytes past the end of the body or None while the
    body goes on). Subclasses: a known length, chunked (re-framed for an HTTP/1.1 peer or
    decoded for HTTP/1.0), or until the sender closes.
    """

    __slots__ = ()

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        raise NotImplementedError

    def eof(self) -> bytes | None:
        """What to send when the sender closes; None if the body was cut short."""
        return None


class _Length(_Framer):
    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        remaining = self.remaining
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            return data, None
        self.remaining = 0
        return data[:remaining], data[remaining:]


class _UntilEof(_Framer):
    __slots__ = ("reframe",)

    def __init__(self, reframe: bool) -> None:
        self.reframe = reframe

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        return (b"%x\r\n%b\r\n" % (len(data), data) if self.reframe and data else data), None

    def eof(self) -> bytes | None:
        return b"0\r\n\r\n" if self.reframe else b""


_SIZE, _DATA, _DATA_END, _TRAILER = range(4)
_MAX_LINE = 8 * 1024


class _Chunked(_Framer):
    """Chunked transfer coding, incrementally. Chunk extensions and trailers are dropped:
    nothing on either side of TF Serving uses them, and dropping them is always valid."""

    __slots__ = ("line", "reframe", "remaining", "state")

    def __init__(self, reframe: bool) -> None:
        self.reframe = reframe
        self.state = _SIZE
        self.remaining = 0
        self.line = b""

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            if self.state == _DATA:
                take = min(self.remaining, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.state = _DATA_END
                continue
            eol = data.find(b"\n", pos)
            if eol < 0:
                self.line += data[pos:]
                if len(self.line) > _MAX_LINE:
                    raise _BadMessage(400, "Bad Request")
                break
            line = (self.line + data[pos:eol]).rstrip(b"\r")
            self.line = b""
            pos = eol + 1
            if self.state == _SIZE:
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadMessage(400, "Bad Request") from None
                if size < 0:
                    raise _BadMessage(400, "Bad Request")
                if size:
                    self.state, self.remaining = _DATA, size
                    if self.reframe:
                        out.append(b"%x\r\n" % size)
                else:
                    self.state = _TRAILER
            elif self.state == _DATA_END:
                if line:
                    raise _BadMessage(400, "Bad Request")
                self.state = _SIZE
                if self.reframe:
                    out.append(b"\r\n")
            elif not line:  # the empty line after the trailer fields: the body is over
                if self.reframe:
                    out.append(b"0\r\n\r\n")
                return b"".join(out), data[pos:]
        return b"".join(out), None


# -- The relay -------------------------------------------------------------------------
#
# Everything below runs in protocol callbacks on the router's loop: no task, future or
# stream buffer per request, and two loop turns per request rather than four. The same relay
# on asyncio streams measured 0.25 ms added against 0.20 ms for this one. Only connecting to a
# revision is a task, and that happens once per pooled connection.


class _Pool:
    """Idle keep-alive connections per backend address; touched on the loop thread only."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Upstream]] = {}

    def take(self, address: tuple[str, int]) -> _Upstream | None:
        idle = self._idle.get(address)
        while idle:
            upstream = idle.pop()
            if not upstream.closed:  # one the revision closed while idle removed itself, or is closing
                return upstream
        return None

    def give(self, upstream: _Upstream) -> None:
        idle = self._idle.setdefault(upstream.address, [])
        if len(idle) < _MAX_IDLE_PER_BACKEND and upstream.transport is not None and not upstream.closed:
            upstream.transport.resume_reading()  # it may have been paused for a slow client
            idle.append(upstream)
        else:
            upstream.close()

    def forget(self, upstream: _Upstream) -> None:
        idle = self._idle.get(upstream.address)
        if idle is not None and upstream in idle:
            idle.remove(upstream)

    def drop(self, address: tuple[str, int] | None = None) -> None:
        """Close the idle connections to `address` (all when None)."""
        addresses = [address] if address is not None else list(self._idle)
        for key in addresses:
            for upstream in self._idle.pop(key, []):
                upstream.close()


class _Upstream(asyncio.Protocol):
    """One connection to a revision; carries one exchange at a time, then goes back to the pool."""

    def __init__(self, router: Router, address: tuple[str, int]) -> None:
        self.router = router
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.exchange is not None:
            self.exchange.upstream_data(data)
        else:
            self.close()  # bytes nobody asked for: this connection is out of step

    def eof_received(self) -> bool:
        return False  # close; connection_lost tells the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.upstream_lost(exc)
        else:
            self.router._pool.forget(self)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.down.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.down.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Exchange:
    """One request relayed to one revision, and its response relayed back."""

    __slots__ = (
        "attempt", "backend", "down", "framer", "head_buf", "http10", "keep", "method", "pooled",
        "replay", "responded", "revision", "started", "status", "up", "up_keep", "upload",
    )

    def __init__(
        self,
        down: _Downstream,
        revision: str,
        backend: _Backend,
        method: bytes,
        http10: bool,
        keep: bool,
        replay: bytes,
        upload: _Framer | None,
        started: float,
    ) -> None:
        self.down = down
        self.revision = revision
        self.backend = backend
        self.method = method
        self.http10 = http10
        self.keep = keep
        self.replay = replay  # the whole request (head + buffered body), or the head of a streamed one
        self.upload = upload  # framer of a request body still to stream, else None
        self.started = started
        self.attempt = 1
        self.up: _Upstream | None = None
        self.pooled = False
        self.framer: _Framer | None = None  # set once the response head is in
        self.head_buf = b""
        self.responded = False  # some of the response went to the client
        self.status = 0  # the response's status, as recorded in the metrics
        self.up_keep = False  # the revision's connection can carry another request

    # -- Sending ---------------------------------------------------------------------

    def start(self) -> None:
        # A streamed body cannot be replayed, so it always gets a fresh connection; a
        # pooled one may be closed by the revision just as the request goes out (replayed once).
        up = None if self.upload is not None or self.attempt > 1 else self.down.router._pool.take(self.backend.address)
        if up is None:
            self.down.router._spawn(self._connect())
        else:
            self._send(up, pooled=True)

    async def _connect(self) -> None:
        router = self.down.router
        address = self.backend.address
        try:
            _, up = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(lambda: _Upstream(router, address), *address),
                _CONNECT_TIMEOUT_S,
            )
        except TimeoutError:
            self._fail(504, "Gateway Timeout", "Gateway Timeout\n")
            return
        except OSError as exc:
            log.debug("connecting to %s failed: %r", self.backend.revision_id, exc)
            self._fail(503, "Service Unavailable", f"Service Unavailable: revision {self.backend.revision_id} "
                       f"did not respond ({type(exc).__name__})\n")
            return
        if self.down.exchange is not self:  # the client left meanwhile: keep the connection for later
            router._pool.give(up)
            return
        self._send(up, pooled=False)

    def _send(self, up: _Upstream, *, pooled: bool) -> None:
        self.up, self.pooled = up, pooled
        up.exchange = self
        up.write(self.replay)
        if self.upload is not None:
            self.down.begin_upload()

    def upload_data(self, data: bytes) -> bytes | None:
        """Pass client bytes of a streamed body on; returns what follows the body once it ended."""
        assert self.upload is not None and self.up is not None
        out, rest = self.upload.feed(data)  # _BadMessage: the caller cuts the client
        if out:
            self.up.write(out)
        if rest is not None:
            self.upload = None
        return rest

    # -- Receiving -------------------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        down = self.down
        rest: bytes | None
        if self.framer is None:
            data = self.head_buf + data
            while True:
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    self.head_buf = data
                    if len(data) > _MAX_HEAD:
                        self._bad_gateway("response head too large")
                    return
                try:
                    status, head = _response_head(data[: end + 4])
                except _BadMessage as exc:
                    self._bad_gateway(exc.reason)
                    return
                data = data[end + 4 :]
                if status >= 200:  # 1xx are interim (Upgrade is never forwarded, so no 101)
                    break
            self.head_buf = b""
            self.status = status
            response_head = self._client_head(status, head)
            try:
                out, rest = self.framer.feed(data) if self.framer is not None else (b"", b"")
            except _BadMessage as exc:
                self._bad_gateway(f"malformed body: {exc.reason}")
                return
            self.responded = True
            down.write(response_head + out)
        else:
            try:
                out, rest = self.framer.feed(data)
            except _BadMessage as exc:
                self._cut(f"malformed body: {exc.reason}")
                return
            if out:
                down.write(out)
        if rest is not None:
            self._done(reusable=not rest and self.up_keep)

    def _client_head(self, status: int, head: _Head) -> bytes:
        """The response head for the client; sets the framer that finds the end of the body."""
        self.up_keep = head.first.startswith(b"HTTP/1.1") and b"close" not in head.tokens
        out = [b"HTTP/1.1 " + head.first.split(b" ", 1)[1], *head.lines, self.backend.header]
        length = head.length
        if self.method == b"HEAD" or status in (204, 304):
            self.framer = None
            # A HEAD answer's Content-Length describes the GET body: pass it on unchanged.
            if length >= 0 and status != 204:
                out.append(b"Content-Length: %d" % length)
        elif length >= 0:
            self.framer = _Length(length)
            out.append(b"Content-Length: %d" % length)
        else:
            if length == _ABSENT:
                self.up_keep = False
                self.framer = _UntilEof(reframe=not self.http10)
            else:
                self.framer = _Chunked(reframe=not self.http10)
            if self.http10:
                self.keep = False  # the body ends when the connection does
            else:
                out.append(b"Transfer-Encoding: chunked")
        if not self.keep or self.down.router._stopping:
            self.keep = False
            out.append(b"Connection: close")
        elif self.http10:
            out.append(b"Connection: keep-alive")
        out.append(b"\r\n")
        return b"\r\n".join(out)

    def upstream_lost(self, exc: Exception | None) -> None:
        """The revision closed (or reset) the connection during this exchange."""
        self.up = None
        if self.framer is not None:
            tail = self.framer.eof()
            if tail is not None:  # a close-delimited body ends here
                self.down.write(tail)
                self._done(reusable=False)
            else:
                self._cut(f"closed mid-body ({exc!r})")
        elif self.responded:
            self._done(reusable=False)  # a bodiless response was complete
        elif self.pooled and self.attempt == 1 and not self.head_buf and self.upload is None:
            self.attempt = 2  # a kept-alive connection the revision closed: replay on a fresh one
            self.start()
        else:
            log.debug("%s closed the connection before answering: %r", self.backend.revision_id, exc)
            self._fail(503, "Service Unavailable",
                       f"Service Unavailable: revision {self.backend.revision_id} closed the connection\n")

    # -- Ending ----------------------------------------------------------------------

    def _done(self, *, reusable: bool) -> None:
        up, self.up = self.up, None
        if up is not None:
            up.exchange = None
            if reusable and self.upload is None:
                self.down.router._pool.give(up)
            else:
                up.close()
        self.down.finish(self, self.status, self.keep and self.upload is None)

    def _fail(self, status: int, reason: str, text: str) -> None:
        """Answer for the revision before any of its response was sent."""
        self.status = status
        self.down.write(_plain(status, reason, text, close=not self.keep or self.upload is not None))
        self._done(reusable=False)

    def _bad_gateway(self, why: str) -> None:
        log.debug("%s sent a malformed response: %s", self.backend.revision_id, why)
        self._fail(502, "Bad Gateway", "Bad Gateway: malformed response\n")

    def _cut(self, why: str) -> None:
        """The head is gone already: the only honest signal left is a cut connection, and the
        client saw a failed request, so it counts as a 5xx against the revision."""
        log.debug("relaying from %s broke off: %s", self.backend.revision_id, why)
        self.status = 502
        self.keep = False
        self.down.abort()
        self._done(reusable=False)

    def client_gone(self) -> None:
        """The client left first: not the revision's failure."""
        self.status = _CLIENT_CLOSED
        self.keep = False
        self._done(reusable=False)


Picker = Callable[[], tuple[str | None, str]]  # (revision, why there is none)


class _Downstream(asyncio.Protocol):
    """One client connection: requests are relayed strictly in order (pipelining included)."""

    def __init__(self, router: Router, pick: Picker) -> None:
        self.router = router
        self.pick = pick
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.exchange: _Exchange | None = None
        self.uploading = False  # the exchange's request body is being streamed from `buf`/the socket
        self.continued = False  # "100 Continue" sent for the request waiting for its body
        self.paused = False
        self.client_eof = False
        # A request whose revision is starting from zero waits (`waking`) with its pick and arrival
        # kept, so the split is not drawn twice and the cold start counts as latency.
        self.held: tuple[str, str, float] | None = None  # (revision, why, arrival) of that request
        self.waking: str | None = None

    @property
    def idle(self) -> bool:
        return self.exchange is None and self.waking is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.router._stopping:
            transport.close()
        else:
            self.router._downstreams.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.router._downstreams.discard(self)
        if self.exchange is not None:
            self.exchange.client_gone()

    def eof_received(self) -> bool:
        self.client_eof = True
        return not self.idle  # keep the socket open to answer what is in flight

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if self.uploading and exchange is not None:
            self._upload(data)
            return
        self.buf = self.buf + data if self.buf else data
        if exchange is None and self.waking is None:
            self._next()
        elif len(self.buf) > _MAX_HEAD + _BUFFER_LIMIT:
            self.pause_reading()  # a client pipelining far ahead waits for us

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        up = self.exchange.up if self.exchange is not None else None
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.exchange.up if self.exchange is not None else None
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- Requests --------------------------------------------------------------------

    def _next(self) -> None:
        """Start the next complete request in `buf`, if there is one."""
        buf = self.buf
        if buf[:2] == b"\r\n":
            buf = self.buf = buf.lstrip(b"\r\n")  # stray CRLF between pipelined requests is allowed
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._reject(431, "Request Header Fields Too Large")
            elif self.client_eof:
                self.close()
            return
        started = self.held[2] if self.held is not None else time.perf_counter()
        try:
            head = _parse_head(buf[: end + 4], _REQUEST_DROPPED)
            method, _, rest = head.first.partition(b" ")
            target, _, version = rest.rpartition(b" ")
            if not method or not target or version not in (b"HTTP/1.1", b"HTTP/1.0"):
                raise _BadMessage(400, "Bad Request")
        except _BadMessage as exc:
            self._reject(exc.status, exc.reason)
            return
        length = head.length
        streamed = length == _CHUNKED or length > _BUFFER_LIMIT
        body_end = end + 4 + (length if not streamed and length > 0 else 0)
        if len(buf) < body_end:
            if head.expect_continue and not self.continued:
                self.continued = True
                self.write(_CONTINUE)
            return  # wait for the rest of the body
        held, self.held = self.held, None
        revision, why = (held[0], held[1]) if held is not None else self.pick()
        backend = self.router._backends.get(revision) if revision is not None else None
        if backend is None and revision is not None and held is None and revision in self.router._expected:
            # Scaled to zero and starting again: hold the request (unconsumed) as a cold start does.
            self.held, self.waking = (revision, why, started), revision
            self.pause_reading()
            self.router._spawn(self._await_backend(revision))
            return
        if streamed and head.expect_continue and not self.continued:
            self.write(_CONTINUE)
        self.continued = False
        body = buf[end + 4 : body_end]
        self.buf = buf[body_end:]
        http10 = version == b"HTTP/1.0"
        keep = (b"keep-alive" in head.tokens) if http10 else (b"close" not in head.tokens)
        if revision is None or backend is None:
            if revision is not None:
                why = f"revision {revision.rsplit('/', 1)[-1]} is not running"
            keep = keep and not streamed  # not worth reading a large upload just to throw it away
            self.write(_plain(503, "Service Unavailable", f"Service Unavailable: {why}\n", close=not keep))
            if revision is not None:
                self.router.metrics.record(revision, 503, time.perf_counter() - started)
            self._after(keep)
            return
        lines = head.lines
        if not head.has_host:
            lines = [*lines, b"Host: %s:%d" % (backend.address[0].encode(), backend.address[1])]
        if length == _CHUNKED:
            lines = [*lines, b"Transfer-Encoding: chunked"]
        elif length >= 0:
            lines = [*lines, b"Content-Length: %d" % length]
        request = b"%s %s HTTP/1.1\r\n%s\r\n\r\n%b" % (method, target, b"\r\n".join(lines), body)
        upload: _Framer | None = None
        if streamed:
            upload = _Chunked(reframe=True) if length == _CHUNKED else _Length(length)
        self.exchange = _Exchange(self, revision, backend, method, http10, keep, request, upload, started)
        self.exchange.start()

    async def _await_backend(self, revision: str) -> None:
        """Wait for a waking revision's backend (or for its start to be given up), then go on."""
        router = self.router
        while (revision not in router._backends and time.monotonic() < router._expected.get(revision, 0.0)
               and self.transport is not None and not router._stopping):
            await asyncio.sleep(_WAKE_POLL_S)
        self.waking = None
        if self.transport is None or router._stopping:
            self.close()
            return
        self.resume_reading()
        self._next()  # takes the held pick: the backend, or a 503 saying the revision is not running

    def begin_upload(self) -> None:
        """The streamed body's connection is ready: send what is buffered, then what arrives."""
        self.uploading = True
        buf, self.buf = self.buf, b""
        self.resume_reading()
        if buf:
            self._upload(buf)

    def _upload(self, data: bytes) -> None:
        exchange = self.exchange
        assert exchange is not None
        try:
            rest = exchange.upload_data(data)
        except _BadMessage:
            self.abort()  # a malformed chunked body: nothing sensible can follow on either side
            return
        if rest is not None:
            self.uploading = False
            self.buf = rest

    def finish(self, exchange: _Exchange, status: int, keep: bool) -> None:
        """`exchange` ended: record it, then close or go on with the next request."""
        if self.exchange is exchange:
            self.exchange = None
            self.uploading = False
        self.router.metrics.record(exchange.revision, status, time.perf_counter() - exchange.started)
        self._after(keep)

    def _after(self, keep: bool) -> None:
        if not keep or self.router._stopping or self.transport is None:
            self.close()
            return
        self.resume_reading()
        if self.buf or self.client_eof:
            self._next()

    def _reject(self, status: int, reason: str) -> None:
        self.write(_plain(status, reason, f"{reason}\n", close=True))
        self.close()


def _response_head(raw: bytes) -> tuple[int, _Head]:
    head = _parse_head(raw, _RESPONSE_DROPPED)
    parts = head.first.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _BadMessage(502, "Bad Gateway")
    return int(parts[1]), head


class Router:
    """Serves service and tag URLs and forwards each request to a revision's host port.

    `host` defaults to $TFMS_ROUTER_HOST, else 127.0.0.1. `backend_host` is where
    revisions listen. Thread-safe; every method may be called from any thread but the
    router's own.
    """

    def __init__(self, host: str | None = None, *, backend_host: str = DEFAULT_HOST) -> None:
        self.host = host or os.environ.get(ROUTER_HOST_ENV) or DEFAULT_HOST
        check_listenable(self.host, "router_host" if host else f"${ROUTER_HOST_ENV}", "the router")
        self._url_host = self._url_host_for(self.host)
        self._backend_host = backend_host
        self._lock = threading.Lock()  # serialises writers; readers rely on atomic dict ops
        self._routes: dict[str, _Route] = {}
        self._backends: dict[str, _Backend] = {}
        self._expected: dict[str, float] = {}  # revision -> monotonic deadline of its (re)start
        self._listeners: dict[tuple[str, str | None], int] = {}
        self._servers: list[asyncio.Server] = []
        self._starting: list[concurrent.futures.Future[None]] = []
        self._downstreams: set[_Downstream] = set()  # loop thread only
        self._tasks: set[asyncio.Task[None]] = set()  # connects in progress; loop thread only
        self._pool = _Pool()  # loop thread only
        self._stopping = False  # set on the loop thread by shutdown
        self._closed = False
        self._thread = LoopThread("tfms-router")
        self.metrics = RouterMetrics(self._on_loop)

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
                pick: Picker = (
                    functools.partial(self._pick_service, service)
                    if tag is None
                    else functools.partial(self._pick_tag, service, tag)
                )
                self._starting.append(self._thread.submit(self._listen(sock, pick)))
        return f"http://{self._url_host}:{port}"

    async def _listen(self, sock: socket.socket, pick: Picker) -> None:
        try:
            server = await asyncio.get_running_loop().create_server(lambda: _Downstream(self, pick), sock=sock)
        except BaseException:
            sock.close()
            raise
        self._servers.append(server)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` on the loop, holding a reference until it is done (the loop keeps weak ones)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        header = f"{REVISION_HEADER}: {revision_id}".encode("latin-1")
        with self._lock:
            self._backends[revision] = _Backend(revision_id, (self._backend_host, port), header)
            self._expected.pop(revision, None)

    def expect_backend(self, revision: str, within_s: float) -> None:
        """`revision` is starting from zero: hold its requests up to `within_s` instead of a 503."""
        with self._lock:
            self._expected[revision] = time.monotonic() + within_s

    def give_up_backend(self, revision: str) -> None:
        """The start failed: requests held for `revision` get their 503 now."""
        with self._lock:
            self._expected.pop(revision, None)

    def remove_backend(self, revision: str) -> None:
        with self._lock:
            backend = self._backends.pop(revision, None)
        if backend is not None and self._thread.alive:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._thread.call_soon(self._pool.drop, backend.address)

    # -- Request path -----------------------------------------------------------------

    def _pick_service(self, service: str) -> tuple[str | None, str]:
        route = self._routes.get(service)
        revision = route.balancer.pick() if route is not None else None
        return revision, "no revision of this service is receiving traffic"

    def _pick_tag(self, service: str, tag: str) -> tuple[str | None, str]:
        route = self._routes.get(service)
        return (route.tags.get(tag) if route is not None else None), f"no revision is tagged {tag!r}"

    # -- Lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening, let requests in flight finish (briefly), close every connection."""
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
        self._stopping = True  # answers in flight say "Connection: close"; idle clients are closed now
        for server in self._servers:
            server.close()
        for down in list(self._downstreams):
            if down.idle:
                down.close()
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        while self._downstreams and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for down in list(self._downstreams):
            down.abort()
        for task in list(self._tasks):
            task.cancel()
        self._pool.drop()
        await asyncio.sleep(0)  # let the transports run their close callbacks
