"""The REST transport: an aiohttp server on its own thread, sharing the gRPC side's dispatcher.

Point the real client at it with `ServicesClient(transport="rest",
credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=emu.rest_url))`.
Control-plane calls block (locks, WaitOperation, injected delays), so they run on a thread
pool and the event loop only parses and writes HTTP. `/_emulator/...` is the control API.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

from aiohttp import web

from .control import Control
from .control_api import History, MetricsView, control_routes
from .errors import ApiError
from .rest import decode_request, encode_message, error_envelope, find_route, not_bound, wants_int_enums
from .rpcs import Dispatcher, to_pb
from .state import StateView
from .ui import ui_routes

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024
JSON = "application/json"


class RestServer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        control: Control,
        snapshot: Callable[[], StateView],
        max_workers: int,
        metrics: MetricsView | None = None,
        history: History | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tfms-emulator-rest")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tfms-emulator-rest-loop", daemon=True)
        self._runner: web.AppRunner | None = None
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes(control_routes(control, snapshot, metrics, history))
        app.add_routes(ui_routes())
        app.router.add_route("*", "/{tail:.*}", self._api)
        self._app = app

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen and return the bound (host, port)."""
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._listen(host, port), self._loop).result(10)

    async def _listen(self, host: str, port: int) -> tuple[str, int]:
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        sockets = runner.addresses
        bound: Any = sockets[0]
        return str(bound[0]), int(bound[1])

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout)
            except Exception:  # stopping must not fail because a request misbehaved
                log.exception("REST server cleanup failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _api(self, request: web.Request) -> web.Response:
        query = list(request.query.items())
        found = find_route(request.method, request.path)
        body = await request.read()
        metadata = tuple((key.lower(), value) for key, value in request.headers.items())

        def run() -> Any:
            if found is None:
                raise not_bound(request.method, request.path)
            route, bound = found
            message = decode_request(route, bound, body, query)
            return self._dispatcher.call(route.rpc.name, message, metadata, "rest")

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool, run)
        except ApiError as error:
            status, text = error_envelope(error)
            return web.Response(status=status, text=text, content_type=JSON)
        return web.Response(text=encode_message(to_pb(result), wants_int_enums(query)), content_type=JSON)
