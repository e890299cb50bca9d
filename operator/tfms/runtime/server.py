"""Serving `RestApi` over HTTP until SIGTERM/SIGINT.

The socket is opened only after the caller has loaded the models: a TCP connect is the
readiness probe (Cloud Run's default startup probe, and the emulator's).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from tfms.runtime.httpserver import HttpServer, Request, Response
from tfms.runtime.rest import RestApi

log = logging.getLogger("tfms.runtime")


def rest_handler(api: RestApi) -> Callable[[Request], Response]:
    def handle(req: Request) -> Response:
        reply = api.handle(req.method, req.raw_path, req.body, req.headers.get("origin"))
        return Response(reply.status, reply.body, reply.content_type, reply.headers)

    return handle


class RestServer(HttpServer):
    """An HttpServer answering TF Serving's REST API."""

    def __init__(self, api: RestApi, num_threads: int, timeout_ms: int) -> None:
        super().__init__(rest_handler(api), num_threads, timeout_ms / 1000 if timeout_ms > 0 else None)
        self.api = api


async def run_until_signalled(
    server: HttpServer | None, host: str, port: int | None, on_bound: Callable[[int], None] | None = None
) -> None:
    """Serve (if there is a port) until SIGTERM or SIGINT, then close connections."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if server is not None and port is not None:
            bound = await server.start(host, port)
            if on_bound is not None:
                on_bound(bound)
        await stop.wait()
        log.info("Received shutdown signal; stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if server is not None:
            await server.stop()
