"""A small HTTP/1.1 server on asyncio protocols, tuned for many tiny requests.

A general framework spends more per request than a small model's whole `session.run`,
so this speaks just what TF Serving clients use: keep-alive, pipelining (answered in
order), Content-Length or chunked bodies, `Expect: 100-continue`. Each request is handed
to a synchronous `handle(method, raw_path, body, headers)` either inline or in a thread
pool, chosen per path from how long that path has been taking: a sub-millisecond
predict is cheaper than the thread hand-off, while a slow model must never stall the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

log = logging.getLogger("tfms.runtime")

MAX_HEADER = 64 * 1024
MAX_BODY = 1 << 31
INLINE_BUDGET_S = 0.001  # paths averaging less than this run on the event loop
INLINE_MAX_BODY = 64 * 1024
_LOOP_BLOCK_LIMIT_S = 0.005  # one inline call this slow sends the path back to the pool


@dataclass
class Request:
    method: str
    raw_path: str  # without the query string, still percent-encoded
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Closed Request" if status == 499 else "Unknown"


class _Timing:
    """Per-path moving average of handler time, deciding inline vs. thread pool."""

    def __init__(self) -> None:
        self._avg: dict[str, float] = {}

    def inline(self, path: str, body_len: int) -> bool:
        avg = self._avg.get(path)
        return avg is not None and avg < INLINE_BUDGET_S and body_len <= INLINE_MAX_BODY

    def record(self, path: str, seconds: float) -> None:
        if len(self._avg) > 1024:
            self._avg.clear()
        prev = self._avg.get(path)
        if seconds > _LOOP_BLOCK_LIMIT_S:
            self._avg[path] = seconds
        else:
            self._avg[path] = seconds if prev is None else prev * 0.9 + seconds * 0.1


class HttpProtocol(asyncio.Protocol):
    """One client connection; requests are answered strictly in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.closing = False
        self.continued = False  # "100 Continue" already sent for the pending request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > MAX_HEADER + MAX_BODY and self.transport is not None:
            self.transport.close()
            return
        if not self.busy:
            self._process()

    def _write(self, resp: Response, keep_alive: bool, head_only: bool = False) -> None:
        if self.transport is None:
            return
        head = [f"HTTP/1.1 {resp.status} {_reason(resp.status)}",
                f"Content-Type: {resp.content_type}",
                f"Content-Length: {len(resp.body)}",
                f"Date: {self.server.date()}"]
        head.extend(f"{k}: {v}" for k, v in resp.headers.items())
        if not keep_alive:
            head.append("Connection: close")
        body = b"" if head_only else resp.body
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if not keep_alive:
            self.closing = True
            self.transport.close()

    def _parse(self) -> tuple[Request, bool] | None:
        """Take one complete request off the buffer, or None if more bytes are needed."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEADER:
                raise _BadRequest(431, "Request Header Fields Too Large")
            return None
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        while lines and not lines[0]:
            lines.pop(0)  # tolerate stray CRLF between pipelined requests
        if not lines:
            del self.buf[: end + 4]
            return None
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, "Bad Request")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, "Bad Request")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers and key != "content-length" else value
        start = end + 4
        body: bytes
        if "chunked" in headers.get("transfer-encoding", "").lower():
            decoded = self._dechunk(start)
            if decoded is None:
                self._maybe_continue(headers)
                return None
            body, consumed = decoded
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise _BadRequest(400, "Bad Request") from None
            if length < 0 or length > MAX_BODY:
                raise _BadRequest(413, "Payload Too Large")
            if len(self.buf) < start + length:
                self._maybe_continue(headers)
                return None
            body, consumed = bytes(self.buf[start : start + length]), start + length
        del self.buf[:consumed]
        conn = headers.get("connection", "").lower()
        keep_alive = "close" not in conn and (version != "HTTP/1.0" or "keep-alive" in conn)
        path = target.split("?", 1)[0].split("#", 1)[0]
        if path.lower().startswith(("http://", "https://")):  # absolute-form target
            rest = path.split("://", 1)[1]
            path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        return Request(method, path, headers, body), keep_alive

    def _maybe_continue(self, headers: dict[str, str]) -> None:
        expects = headers.get("expect", "").lower() == "100-continue"
        if expects and self.transport is not None and not self.continued:
            self.continued = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dechunk(self, start: int) -> tuple[bytes, int] | None:
        pos, out = start, bytearray()
        while True:
            eol = self.buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_text = bytes(self.buf[pos:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequest(400, "Bad Request") from None
            pos = eol + 2
            if size == 0:
                trailer_end = self.buf.find(b"\r\n", pos)
                while trailer_end > pos:  # skip trailers
                    pos = trailer_end + 2
                    trailer_end = self.buf.find(b"\r\n", pos)
                if trailer_end < 0:
                    return None
                return bytes(out), trailer_end + 2
            if len(self.buf) < pos + size + 2:
                return None
            out += self.buf[pos : pos + size]
            pos += size + 2

    def _process(self) -> None:
        while not self.busy and not self.closing and self.transport is not None:
            try:
                parsed = self._parse()
            except _BadRequest as exc:
                self._write(Response(exc.status, str(exc).encode(), "text/plain"), keep_alive=False)
                return
            if parsed is None:
                return
            self.continued = False
            request, keep_alive = parsed
            timing = self.server.timing
            if timing.inline(request.raw_path, len(request.body)):
                started = time.perf_counter()
                resp = self.server.call(request)
                timing.record(request.raw_path, time.perf_counter() - started)
                self._write(resp, keep_alive, request.method == "HEAD")
            else:
                self.busy = True
                task = asyncio.ensure_future(self._offload(request, keep_alive))
                self.server.tasks.add(task)
                task.add_done_callback(self.server.tasks.discard)

    async def _offload(self, request: Request, keep_alive: bool) -> None:
        try:
            resp = await self.server.call_in_pool(request)
        except Exception:
            log.exception("request failed")
            resp = Response(500, b'{ "error": "Internal error" }')
        self.busy = False
        self._write(resp, keep_alive, request.method == "HEAD")
        if self.buf:
            self._process()


class HttpServer:
    """Listens on one socket and feeds requests to `handler`."""

    def __init__(self, handler: Handler, num_threads: int = 8, timeout_s: float | None = None) -> None:
        self.handler = handler
        self.timeout_s = timeout_s
        self.pool = ThreadPoolExecutor(max_workers=max(num_threads, 1), thread_name_prefix="rest")
        self.timing = _Timing()
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Future[None]] = set()
        self._server: asyncio.Server | None = None
        self._date = ("", 0)

    def date(self) -> str:
        now = int(time.time())
        if self._date[1] != now:
            self._date = (formatdate(now, usegmt=True), now)
        return self._date[0]

    def call(self, request: Request) -> Response:
        try:
            return self.handler(request)
        except Exception:
            log.exception("Unhandled error for %s %s", request.method, request.raw_path)
            return Response(500, b'{ "error": "Internal error" }')

    def _timed_call(self, request: Request) -> tuple[Response, float]:
        started = time.perf_counter()
        resp = self.call(request)
        return resp, time.perf_counter() - started

    async def call_in_pool(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.pool, self._timed_call, request)
        try:
            resp, seconds = await (asyncio.wait_for(job, self.timeout_s) if self.timeout_s else job)
        except TimeoutError:
            return Response(504, b'{ "error": "Deadline Exceeded" }')
        self.timing.record(request.raw_path, seconds)
        return resp

    async def start(self, host: str, port: int) -> int:
        """Bind and listen; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self), host, port, reuse_address=True, backlog=1024
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.transport is not None and not conn.busy:
                conn.transport.close()
        deadline = time.monotonic() + 2.0
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self.pool.shutdown(wait=False, cancel_futures=True)
