"""`Emulator`: the control plane served over real gRPC (and REST), plus `serve_forever` for the CLI."""

from __future__ import annotations

import errno
import signal
import socket
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from types import FrameType, TracebackType

import grpc

from .cli_options import UI_PATH
from .config import EmulatorConfig
from .control import Control
from .executor import Executor
from .handlers import METHOD_NAMES, generic_handlers
from .plane import ControlPlane
from .rest_server import RestServer
from .rpcs import Dispatcher
from .simulated import SimulatedExecutor
from .state import StateView


class PortUnavailable(OSError):
    """The emulator cannot listen where it was asked to; the message names the address and why."""


def _bind_problem(host: str, port: int) -> str:
    """Why `host:port` cannot be bound ("" if it can), found with a plain socket set up as gRPC sets
    its own (SO_REUSEADDR, so a port in TIME_WAIT is fine): gRPC says only that it failed, and
    logs a line of its own."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is already in use"
        return exc.strerror or str(exc)
    return ""


def _unavailable(what: str, host: str, port: int, cause: OSError | None = None) -> PortUnavailable:
    reason = (f"port {port} is already in use" if cause is not None and cause.errno == errno.EADDRINUSE
              else _bind_problem(host, port) or "the address was refused")
    return PortUnavailable(cause.errno if cause is not None and cause.errno else errno.EADDRINUSE,
                           f"cannot listen on {host}:{port} ({what}): {reason}")


class Emulator:
    """A local Cloud Run Admin API v2 on loopback gRPC, and optionally REST, over one state.

    Point the real client at it with
    `ServicesClient(transport=ServicesGrpcTransport(channel=grpc.insecure_channel(emu.address)))`,
    or, after `start(rest_port=0)`, with `ServicesClient(transport="rest",
    credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=emu.rest_url))`.
    With `EmulatorConfig(state_file=...)` the state is loaded at construction and saved after
    every change. `stop()` also closes the executor.
    """

    def __init__(self, config: EmulatorConfig | None = None, executor: Executor | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.executor: Executor = executor or SimulatedExecutor(ready_delay=self.config.ready_delay)
        self.control = Control(METHOD_NAMES, operation_polls=self.config.operation_polls)
        self._plane = ControlPlane(self.config, self.executor, self.control)
        self.executor.bind(self._plane)
        self._plane.resume()  # relaunch what a state file brought back
        self._dispatcher = Dispatcher(self._plane, self.control)
        self._server: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._address = ""
        self._rest_address = ""
        self._stopped = False

    @property
    def address(self) -> str:
        """`host:port` the server listens on (after `start`)."""
        if not self._address:
            raise RuntimeError("emulator not started")
        return self._address

    @property
    def rest_address(self) -> str:
        """`host:port` of the REST transport and the `/_emulator` control API (after `start(rest_port=...)`)."""
        if not self._rest_address:
            raise RuntimeError("REST transport not started (pass rest_port to start)")
        return self._rest_address

    @property
    def rest_url(self) -> str:
        """`http://host:port`, the `api_endpoint` for the REST client."""
        return f"http://{self.rest_address}"

    @property
    def status_url(self) -> str:
        """The status page (services, traffic, live request figures, rollout timelines)."""
        return self.rest_url + UI_PATH

    @property
    def state(self) -> StateView:
        """A consistent copy of all services, revisions, IAM policies and operations."""
        return self._plane.snapshot()

    def wait_until(self, predicate: Callable[[StateView], bool], timeout: float = 5.0) -> bool:
        """Wait for a condition on the state (no sleep-and-hope in tests)."""
        return self._plane.wait_until(predicate, timeout)

    def wait_executor_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every executor call decided so far (launch, set_routes, ...) has been made."""
        return self._plane.wait_effects(timeout)

    def start(self, host: str = "127.0.0.1", port: int = 0, rest_port: int | None = None) -> str:
        """Serve gRPC on `port` (0 picks one) and, when `rest_port` is given, REST on it; returns
        the gRPC address."""
        if self._server is not None or self._stopped:
            raise RuntimeError("an Emulator can be started once")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.max_workers, thread_name_prefix="tfms-emulator"),
            handlers=generic_handlers(self._dispatcher),
            # gRPC sets SO_REUSEPORT by default: a second emulator on a busy port would bind and
            # silently share it (the kernel splitting connections between two states).
            options=[("grpc.so_reuseport", 0)],
        )
        bind_host = f"[{host}]" if ":" in host else host
        if port and _bind_problem(host, port):  # the usual case, named before gRPC logs its own line
            server.stop(None)
            raise _unavailable("gRPC", host, port)
        try:
            bound = server.add_insecure_port(f"{bind_host}:{port}")
        except RuntimeError:  # "Failed to bind to address": the reason is not given
            bound = 0
        if not bound:
            server.stop(None)
            raise _unavailable("gRPC", host, port)
        if rest_port is not None:
            # An executor that routes real requests offers their figures (LocalExecutor.metrics).
            metrics = getattr(self.executor, "metrics", None)
            rest = RestServer(
                self._dispatcher, self.control, self._plane.snapshot, self.config.max_workers, metrics,
                self._plane.history.changes,
            )
            try:
                _, rest_bound = rest.start(host, rest_port)
            except OSError as exc:
                rest.stop()
                server.stop(None)
                raise _unavailable("REST", host, rest_port, exc) from None
            except BaseException:
                rest.stop()
                server.stop(None)
                raise
            self._rest = rest
            self._rest_address = f"{bind_host}:{rest_bound}"
        server.start()
        self._server = server
        self._address = f"{bind_host}:{bound}"
        return self._address

    def stop(self, grace: float = 1.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._plane.wake_waiters()  # ends pending WaitOperation calls so both servers drain promptly
        if self._rest is not None:
            self._rest.stop()
        if self._server is not None:
            self._server.stop(grace).wait()
        self._plane.close()
        self.executor.close()

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    config: EmulatorConfig | None = None,
    executor: Executor | None = None,
    ready: Callable[[str], None] | None = None,
    rest_port: int | None = None,
) -> None:
    """Run an emulator until SIGINT/SIGTERM (`tfms emulator --port N [--rest-port M]`).

    `ready` gets the bound gRPC address; by default it is printed (first line), then the REST
    and control URLs when `rest_port` is given, so a parent process can read the ports when
    they are 0. Must be called from the main thread (signal handlers).
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    emulator = Emulator(config, executor)
    try:
        address = emulator.start(host, port, rest_port)
        if ready is None:
            print(f"tfms emulator listening on {address}", flush=True, file=sys.stdout)
            if rest_port is not None:
                print(f"tfms emulator REST on {emulator.rest_url}", flush=True, file=sys.stdout)
                print(f"tfms emulator control on {emulator.rest_url}/_emulator", flush=True, file=sys.stdout)
                print(f"tfms emulator status page on {emulator.status_url}", flush=True, file=sys.stdout)
        else:
            ready(address)
        stop.wait()
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
