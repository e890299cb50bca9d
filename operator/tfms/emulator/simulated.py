"""`SimulatedExecutor`: revisions that become ready (or fail) on a timer, no processes.

It is the default executor: fast and deterministic, enough for the control-plane
semantics (readiness, failure, routing bookkeeping, Cloud Run-style URLs).
"""

from __future__ import annotations

import threading
from collections import deque

from .executor import RevisionEvents, RevisionLaunch
from .naming import parse_service, tag_url
from .naming import service_url as run_app_url


class SimulatedExecutor:
    """Marks each launched revision ready after `ready_delay` seconds, always on a timer thread.

    Even with a zero delay the outcome is reported asynchronously, so Create/Update return
    a pending operation first, as on Cloud Run.
    """

    def __init__(self, ready_delay: float = 0.0) -> None:
        self.ready_delay = ready_delay
        self._events: RevisionEvents | None = None
        self._lock = threading.Lock()
        self._failures: deque[tuple[str, str]] = deque()
        self._image_failures: dict[str, tuple[str, str]] = {}
        self._timers: dict[str, threading.Timer] = {}
        self.routes: dict[str, tuple[list[tuple[str, int]], dict[str, str]]] = {}
        self.launched: list[RevisionLaunch] = []
        self.stopped: list[str] = []
        self.deleted_services: list[str] = []
        self._closed = False

    def bind(self, events: RevisionEvents) -> None:
        self._events = events

    def fail_next(self, reason: str = "CONTAINER_MISSING", message: str = "Image not found.") -> None:
        """The next launched revision fails with this Cloud Run reason and message."""
        with self._lock:
            self._failures.append((reason, message))

    def fail_image(self, image: str, reason: str = "CONTAINER_MISSING", message: str = "") -> None:
        """Every revision whose ingress container uses `image` fails (until `clear_image`)."""
        with self._lock:
            self._image_failures[image] = (reason, message or f"Image '{image}' not found.")

    def clear_image(self, image: str) -> None:
        with self._lock:
            self._image_failures.pop(image, None)

    def launch(self, launch: RevisionLaunch) -> None:
        with self._lock:
            if self._closed:
                return
            self.launched.append(launch)
            if self._failures:
                failure: tuple[str, str] | None = self._failures.popleft()
            else:
                failure = self._image_failures.get(launch.container.image)
            timer = threading.Timer(self.ready_delay, self._settle, (launch.revision, failure))
            timer.daemon = True
            self._timers[launch.revision] = timer
        timer.start()

    def _settle(self, revision: str, failure: tuple[str, str] | None) -> None:
        with self._lock:
            if self._timers.pop(revision, None) is None:
                return  # stopped or closed meanwhile
            events = self._events
        if events is None:
            return
        if failure is None:
            events.revision_ready(revision)
        else:
            events.revision_failed(revision, failure[0], failure[1])

    def stop_revision(self, revision: str) -> None:
        with self._lock:
            self.stopped.append(revision)
            timer = self._timers.pop(revision, None)
        if timer is not None:
            timer.cancel()

    def set_routes(self, service: str, service_id: str, split: list[tuple[str, int]], tags: dict[str, str]) -> None:
        with self._lock:
            self.routes[service] = (list(split), dict(tags))

    def service_url(self, service: str, service_id: str) -> str:
        name = parse_service(service)
        if name is None:
            raise ValueError(f"not a service name: {service}")
        return run_app_url(name.project, name.location, service_id)

    def tag_url(self, service: str, service_id: str, tag: str) -> str:
        name = parse_service(service)
        if name is None:
            raise ValueError(f"not a service name: {service}")
        return tag_url(name.project, name.location, service_id, tag)

    def delete_service(self, service: str) -> None:
        with self._lock:
            self.deleted_services.append(service)
            self.routes.pop(service, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()
