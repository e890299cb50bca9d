"""`LocalExecutor`: the emulator's revisions as real local processes behind a router.

All process work happens on one supervisor thread with its own event loop: callers (gRPC
workers) only enqueue, so they never block on a container, and every child is forked from
a thread that lives as long as it does (PR_SET_PDEATHSIG follows the forking thread).
Outcomes reach the control plane through a single event thread, never from the caller's
stack or the supervisor loop, so a control plane that calls us under its lock cannot
deadlock against its own callbacks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tfms.emulator.executor import RevisionEvents, RevisionLaunch
from tfms.emulator.local.images import (
    DEFAULT_RUNTIME_COMMAND,
    container_argv,
    container_env,
    parse_tf_serving_image,
    unsupported_image_message,
    write_shims,
)
from tfms.emulator.local.loop import LoopThread
from tfms.emulator.local.metrics import RouterMetrics
from tfms.emulator.local.probe import wait_until_listening
from tfms.emulator.local.process import ContainerProcess
from tfms.emulator.local.router import Router

log = logging.getLogger(__name__)

LOCAL_DIR_ENV = "TFMS_LOCAL_DIR"
IDLE_ENV = "TFMS_LOCAL_IDLE_SECONDS"
DEFAULT_IDLE_S = 60.0
_WAKE_WINDOW_S = 240.0  # until the supervisor sets the revision's own startup timeout
CONTAINER_MISSING = "CONTAINER_MISSING"
HEALTH_CHECK_CONTAINER_ERROR = "HEALTH_CHECK_CONTAINER_ERROR"
_LOG_TAIL_LINES = 20
_REVISION_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/services/([^/]+)/revisions/([^/]+)$")


@dataclass(frozen=True)
class LocalRevisionStatus:
    """What is known locally about one revision (for `tfms up` output and tests)."""

    state: str  # starting | ready | idling | idle | exited | failed | stopping | stopped
    pid: int | None
    host_port: int | None
    workdir: Path
    log_path: Path


class _Revision:
    """Supervisor-loop-owned state of one launched revision."""

    def __init__(self, launch: RevisionLaunch, workdir: Path) -> None:
        self.launch = launch
        self.workdir = workdir
        self.state = "starting"
        self.host_port: int | None = None
        self.process: ContainerProcess | None = None
        self.task: asyncio.Task[None] | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.waking = False  # starting again after an idle stop: Ready all along for Cloud Run

    @property
    def log_path(self) -> Path:
        return self.workdir / "container.log"


def _idle_setting(raw: str) -> float | None:
    """$TFMS_LOCAL_IDLE_SECONDS: seconds > 0, or 'off' to keep every revision's server running."""
    if not raw:
        return DEFAULT_IDLE_S
    if raw.lower() == "off":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"${IDLE_ENV}={raw!r}: must be a number of seconds > 0, or off")
    return value


def _safe_component(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", value)
    return cleaned if cleaned not in ("", ".", "..") else f"_{cleaned}"


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class LocalExecutor:
    """Runs TF Serving revisions as local processes and routes requests between them.

    `run_dir`: where per-revision work dirs go (default $TFMS_LOCAL_DIR, else a temp dir
    removed by `close()`). `runtime_command`: what the image's `tensorflow_model_server`
    runs (default `python -m tfms.runtime`). `router_host`: the router's listen address
    (default $TFMS_ROUTER_HOST, else 127.0.0.1). `stop_grace_s`: SIGTERM-to-SIGKILL delay.
    `idle_s`: how long a ready revision may have no traffic and no tag before its model server
    is stopped (default $TFMS_LOCAL_IDLE_SECONDS, else 60; None: never). Like Cloud Run scaling
    it to zero, the revision stays Ready and starts again when traffic or a tag comes back,
    requests waiting meanwhile; without it every old revision keeps a model in memory.
    """

    def __init__(
        self,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        runtime_command: Sequence[str] | None = None,
        router_host: str | None = None,
        stop_grace_s: float = 5.0,
        runtime_host: str = "127.0.0.1",
        idle_s: float | Literal["env"] | None = "env",
    ) -> None:
        self._idle_s: float | None = (
            _idle_setting(os.environ.get(IDLE_ENV, "")) if isinstance(idle_s, str) else idle_s)
        configured = run_dir if run_dir is not None else os.environ.get(LOCAL_DIR_ENV)
        if configured:
            self.run_dir = Path(configured).resolve()
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                source = "run_dir" if run_dir is not None else f"${LOCAL_DIR_ENV}"
                raise ValueError(f"{source}={str(configured)!r}: cannot create the directory for revision "
                                 f"work dirs ({exc.strerror or exc})") from exc
            self._owns_run_dir = False
        else:
            self.run_dir = Path(tempfile.mkdtemp(prefix="tfms-local-"))
            self._owns_run_dir = True
        self._runtime_command = tuple(runtime_command or DEFAULT_RUNTIME_COMMAND)
        self._runtime_host = runtime_host
        self._stop_grace_s = stop_grace_s
        self._events: RevisionEvents | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._revisions: dict[str, _Revision] = {}  # touched on the supervisor loop only
        # Under _lock, shared by set_routes (any thread) and idle stops (supervisor loop), so a
        # revision routed again is either seen idle (and expected by the router) or not stopped.
        self._routed: dict[str, frozenset[str]] = {}  # service -> revisions with traffic or a tag
        self._idle: set[str] = set()  # revisions stopped for idleness (or stopping), still Ready
        self._ports_in_use: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._notifier = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tfms-local-events")
        try:
            self._router = Router(router_host, backend_host=runtime_host)
        except ValueError:
            if self._owns_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            self._notifier.shutdown(wait=False)
            raise
        self._supervisor = LoopThread("tfms-local-supervisor")

    # -- Executor protocol ------------------------------------------------------------

    def bind(self, events: RevisionEvents) -> None:
        self._events = events

    def launch(self, launch: RevisionLaunch) -> None:
        if self._closed:
            raise RuntimeError("LocalExecutor is closed")
        self._supervisor.call_soon(self._on_launch, launch)

    def stop_revision(self, revision: str) -> None:
        if self._closed:
            return  # everything is stopped already
        self._router.remove_backend(revision)
        self._supervisor.call_soon(self._on_stop, revision)

    def set_routes(self, service: str, service_id: str, split: list[tuple[str, int]], tags: dict[str, str]) -> None:
        routed = frozenset([r for r, percent in split if percent > 0] + list(tags.values()))
        with self._lock:
            self._routed[service] = routed
            waking = routed & self._idle
            self._idle -= waking
            for revision in waking:  # requests wait for these rather than get a 503
                self._router.expect_backend(revision, _WAKE_WINDOW_S)
        self._router.set_routes(service, split, tags)
        if not self._closed and (waking or self._idle_s is not None):
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing to start or stop
                self._supervisor.call_soon(self._on_routes, service)

    def service_url(self, service: str, service_id: str) -> str:
        return self._router.service_url(service)

    def tag_url(self, service: str, service_id: str, tag: str) -> str:
        return self._router.tag_url(service, tag)

    def delete_service(self, service: str) -> None:
        if self._closed:
            return
        with self._lock:
            self._routed.pop(service, None)
        self._router.clear_routes(service)
        self._supervisor.call_soon(self._on_delete_service, service)

    def close(self) -> None:
        """Stop every container (SIGTERM, bounded wait, SIGKILL), the router and threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._supervisor.call(self._stop_all(), timeout=self._stop_grace_s + 10.0)
        except Exception:
            log.exception("stopping local revisions failed; killing them")
        self._supervisor.stop()
        for rec in list(self._revisions.values()):  # the loop is gone: no concurrent writers
            if rec.process is not None:
                rec.process.kill_now()
        self._router.close()
        self._notifier.shutdown(wait=False, cancel_futures=True)
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- Introspection ----------------------------------------------------------------

    @property
    def metrics(self) -> RouterMetrics:
        """Per-revision requests as the router saw them (the emulator serves them at /_emulator/metrics)."""
        return self._router.metrics

    def revision_status(self, revision: str) -> LocalRevisionStatus | None:
        rec = self._revisions.get(revision)
        if rec is None:
            return None
        return LocalRevisionStatus(
            state=rec.state,
            pid=rec.process.pid if rec.process is not None else None,
            host_port=rec.host_port,
            workdir=rec.workdir,
            log_path=rec.log_path,
        )

    # -- Supervisor loop --------------------------------------------------------------

    def _on_routes(self, service: str) -> None:
        """Start idle revisions that got traffic back; time the idle stop of those that lost it."""
        for rec in list(self._revisions.values()):
            if rec.launch.service != service:
                continue
            if rec.state == "idle" and self._is_routed(rec):
                self._wake(rec)
            elif rec.state == "ready":
                self._time_idle_stop(rec)

    def _is_routed(self, rec: _Revision) -> bool:
        with self._lock:
            routed = self._routed.get(rec.launch.service)
        return routed is None or rec.launch.revision in routed  # no routes yet: being set up

    def _time_idle_stop(self, rec: _Revision) -> None:
        if self._is_routed(rec) or self._idle_s is None:
            if rec.idle_timer is not None:
                rec.idle_timer.cancel()
                rec.idle_timer = None
        elif rec.idle_timer is None:
            rec.idle_timer = asyncio.get_running_loop().call_later(self._idle_s, self._idle_stop, rec)

    def _idle_stop(self, rec: _Revision) -> None:
        rec.idle_timer = None
        with self._lock:
            routed = self._routed.get(rec.launch.service)
            if rec.state != "ready" or routed is None or rec.launch.revision in routed:
                return
            self._idle.add(rec.launch.revision)
        rec.state = "idling"
        self._spawn(self._scale_to_zero(rec))

    async def _scale_to_zero(self, rec: _Revision) -> None:
        self._router.remove_backend(rec.launch.revision)
        if rec.process is not None and not rec.process.exited.done():
            await rec.process.stop(self._stop_grace_s)
        self._release_port(rec)
        if rec.state != "idling":  # stopped or deleted meanwhile
            return
        rec.state = "idle"
        log.info("revision %s has had no traffic and no tag for %gs: stopped its model server (it stays Ready "
                 "and starts again when routed)", rec.launch.revision_id, self._idle_s or 0)
        with self._lock:
            back = rec.launch.revision not in self._idle  # set_routes routed it while it stopped
        if back:
            self._wake(rec)

    def _wake(self, rec: _Revision) -> None:
        self._router.expect_backend(rec.launch.revision, rec.launch.startup_timeout_s)
        rec.state = "starting"
        rec.task = self._spawn(self._run(rec, waking=True))

    def _on_launch(self, launch: RevisionLaunch) -> None:
        existing = self._revisions.get(launch.revision)
        if existing is not None and existing.state in ("idling", "idle"):  # still Ready, as Cloud Run sees it
            self._notify(self._ready_callback(launch.revision))
            return
        if existing is not None and existing.state in ("starting", "ready"):
            # Already running (e.g. a control plane replaying its state): report, don't fork.
            if existing.state == "ready":
                self._notify(self._ready_callback(launch.revision))
            return
        rec = _Revision(launch, self._workdir_for(launch))
        self._revisions[launch.revision] = rec
        rec.task = self._spawn(self._run(rec))

    def _workdir_for(self, launch: RevisionLaunch) -> Path:
        m = _REVISION_NAME.match(launch.revision)
        parts = m.groups() if m else (launch.service_id, launch.revision_id)
        return self.run_dir.joinpath(*(_safe_component(p) for p in parts))

    def _allocate_port(self) -> int:
        while True:
            with socket.socket(socket.AF_INET6 if ":" in self._runtime_host else socket.AF_INET) as s:
                s.bind((self._runtime_host, 0))
                port: int = s.getsockname()[1]
            if port not in self._ports_in_use:
                self._ports_in_use.add(port)
                return port

    def _release_port(self, rec: _Revision) -> None:
        if rec.host_port is not None:
            self._ports_in_use.discard(rec.host_port)

    async def _run(self, rec: _Revision, waking: bool = False) -> None:
        """Start the container and wait until it listens. `waking`: a Ready revision coming back from
        zero, whose outcome Cloud Run does not report as a revision condition (only its requests fail)."""
        launch, container = rec.launch, rec.launch.container
        rec.waking = waking
        image = parse_tf_serving_image(container.image)
        if image is None:
            self._fail(rec, CONTAINER_MISSING, unsupported_image_message(container.image))
            return
        if image.gpu:
            log.info("revision %s: %s is a GPU image; running it on CPU locally", launch.revision_id, container.image)
        bin_dir, tmp_dir = rec.workdir / "bin", rec.workdir / "tmp"
        try:
            write_shims(bin_dir, self._runtime_command)
            shutil.rmtree(tmp_dir, ignore_errors=True)  # a fresh instance gets a fresh /tmp
            tmp_dir.mkdir(parents=True)
            rec.host_port = self._allocate_port()
            env = container_env(
                host_env=os.environ,
                container=container,
                bin_dir=bin_dir,
                tmp_dir=tmp_dir,
                service_id=launch.service_id,
                revision_id=launch.revision_id,
                host_port=rec.host_port,
                runtime_host=self._runtime_host,
            )
            argv = container_argv(container, bin_dir)
            rec.process = ContainerProcess.start(argv, env, rec.workdir, rec.log_path)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument or env value
            self._fail(
                rec,
                HEALTH_CHECK_CONTAINER_ERROR,
                f"The user-provided container failed to start: {exc}. "
                f"Command: {' '.join(container.command or ('<image entrypoint>',))}",
            )
            return
        proc = rec.process
        log.info(
            "revision %s: pid %d, container port %d on %s:%d, log %s",
            launch.revision_id, proc.pid, container.port, self._runtime_host, rec.host_port, rec.log_path,
        )  # fmt: skip
        probe = asyncio.ensure_future(wait_until_listening(self._runtime_host, rec.host_port))
        try:
            waiters: set[asyncio.Future[Any]] = {probe, proc.exited}
            done, _ = await asyncio.wait(waiters, timeout=launch.startup_timeout_s, return_when=asyncio.FIRST_COMPLETED)
            listening = probe in done
        finally:
            probe.cancel()
        if proc.exited.done():
            self._fail(rec, HEALTH_CHECK_CONTAINER_ERROR, self._crash_message(rec, proc.exited.result()))
            return
        if not listening:
            await proc.stop(self._stop_grace_s)
            self._fail(rec, HEALTH_CHECK_CONTAINER_ERROR, self._timeout_message(rec))
            return
        rec.state = "ready"
        self._router.set_backend(launch.revision, launch.revision_id, rec.host_port)
        log.info("revision %s is ready (pid %d, port %d)", launch.revision_id, proc.pid, rec.host_port)
        if not waking:
            self._notify(self._ready_callback(launch.revision))
        self._time_idle_stop(rec)
        code = await asyncio.shield(proc.exited)
        if rec.state == "ready":  # not a stop we asked for
            rec.state = "exited"
            self._router.remove_backend(launch.revision)
            self._release_port(rec)
            log.error(
                "revision %s %s after it was ready; its requests now get 503. Last log lines (%s):\n%s",
                launch.revision_id, _describe_exit(code), rec.log_path, proc.log_tail(_LOG_TAIL_LINES),
            )  # fmt: skip

    def _port_phrase(self, rec: _Revision) -> str:
        return f"the port defined by PORT={rec.launch.container.port}"

    def _crash_message(self, rec: _Revision, code: int) -> str:
        assert rec.process is not None
        return (
            f"The user-provided container failed to start and listen on {self._port_phrase(rec)}: "
            f"it {_describe_exit(code)} before it was ready. "
            f"Last log lines ({rec.log_path}):\n{rec.process.log_tail(_LOG_TAIL_LINES)}"
        )

    def _timeout_message(self, rec: _Revision) -> str:
        assert rec.process is not None
        port = rec.launch.container.port
        return (
            f"The user-provided container failed to start and listen on {self._port_phrase(rec)} "
            f"within the startup timeout of {rec.launch.startup_timeout_s:g}s, and was stopped. "
            f"Check that the server listens on $PORT (for TF Serving: --rest_api_port={port}). "
            f"Last log lines ({rec.log_path}):\n{rec.process.log_tail(_LOG_TAIL_LINES)}"
        )

    def _fail(self, rec: _Revision, reason: str, message: str) -> None:
        rec.state = "failed"
        self._release_port(rec)
        if rec.waking:  # Cloud Run keeps the revision Ready; its requests fail (503 from the router)
            self._router.give_up_backend(rec.launch.revision)
            log.error("revision %s did not start again after an idle stop (%s): %s", rec.launch.revision_id,
                      reason, message)
            return
        log.warning("revision %s failed (%s): %s", rec.launch.revision_id, reason, message)
        revision = rec.launch.revision

        def callback(events: RevisionEvents) -> None:
            events.revision_failed(revision, reason, message)

        self._notify(callback)

    @staticmethod
    def _ready_callback(revision: str) -> Callable[[RevisionEvents], None]:
        def callback(events: RevisionEvents) -> None:
            events.revision_ready(revision)

        return callback

    def _notify(self, callback: Callable[[RevisionEvents], None]) -> None:
        def deliver() -> None:
            events = self._events
            if events is None:
                log.warning("revision event dropped: LocalExecutor.bind() was never called")
                return
            try:
                callback(events)
            except Exception:
                log.exception("revision event handler failed")

        with contextlib.suppress(RuntimeError):  # shut down: nobody is listening any more
            self._notifier.submit(deliver)

    def _on_stop(self, revision: str) -> None:
        rec = self._revisions.get(revision)
        if rec is not None:
            self._spawn(self._stop(rec))

    def _on_delete_service(self, service: str) -> None:
        for rec in list(self._revisions.values()):
            if rec.launch.service == service:
                self._spawn(self._stop(rec))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task on the supervisor loop, referenced until done (the loop keeps only weak refs)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _stop(self, rec: _Revision) -> None:
        if rec.state == "stopped":
            return
        rec.state = "stopping"  # a second stop (e.g. close() during a stop) waits for the same exit
        if rec.idle_timer is not None:
            rec.idle_timer.cancel()
            rec.idle_timer = None
        with self._lock:
            self._idle.discard(rec.launch.revision)
        self._router.give_up_backend(rec.launch.revision)
        self._router.remove_backend(rec.launch.revision)
        if rec.task is not None and not rec.task.done():
            rec.task.cancel()
        if rec.process is not None and not rec.process.exited.done():
            code = await rec.process.stop(self._stop_grace_s)
            log.info("revision %s stopped (%s)", rec.launch.revision_id, _describe_exit(code))
        rec.state = "stopped"
        self._release_port(rec)

    async def _stop_all(self) -> None:
        await asyncio.gather(*(self._stop(rec) for rec in self._revisions.values()), return_exceptions=True)
