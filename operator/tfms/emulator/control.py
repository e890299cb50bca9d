"""In-process control of the emulator for tests and `tfms up`: faults, delays, call log.

Method names are the short RPC names (`CreateService`, `GetOperation`, ...); the full
`google.cloud.run.v2.Services/CreateService` form is accepted too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]  # gRPC invocation metadata (`-bin` keys carry bytes)


class Call(NamedTuple):
    """One RPC as received: its short method name, the deserialised request, and the transport."""

    method: str
    request: Any
    transport: str = "grpc"  # "grpc" or "rest"


@dataclass
class _Fault:
    code: grpc.StatusCode
    message: str
    remaining: int


class Control:
    """Fault injection and observation; every knob is thread-safe and takes effect at once."""

    def __init__(self, methods: Iterable[str], operation_polls: int = 0) -> None:
        self._methods = frozenset(methods)
        self._lock = threading.Lock()
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._held: dict[str, int] = {}  # calls sleeping in their delay now, by method
        self._calls: list[Call] = []
        self._metadata: list[Metadata] = []
        self._revision_failures: deque[tuple[str, str]] = deque()
        self._image_failures: dict[str, tuple[str, str]] = {}
        self._operation_failures: deque[tuple[grpc.StatusCode, str]] = deque()
        self._polls = self._default_polls = operation_polls

    def _method(self, name: str) -> str:
        short = name.rsplit("/", 1)[-1]
        if short not in self._methods:
            raise ValueError(f"unknown RPC {name!r}; known: {sorted(self._methods)}")
        return short

    # -- knobs ---------------------------------------------------------------------------
    def fail_next(
        self,
        method_name: str,
        code: grpc.StatusCode,
        count: int = 1,
        message: str = "Injected fault.",
    ) -> None:
        """The next `count` calls of the method fail with `code` before touching any state."""
        method = self._method(method_name)
        with self._lock:
            self._faults.setdefault(method, deque()).append(_Fault(code, message, count))

    def delay(self, method_name: str, seconds: float) -> None:
        """Every later call of the method sleeps `seconds` first (0 removes the delay)."""
        method = self._method(method_name)
        with self._lock:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def fail_next_revision(self, reason: str = "CONTAINER_MISSING", message: str = "Image not found.") -> None:
        """The next revision created fails with this Cloud Run reason, whatever the executor."""
        with self._lock:
            self._revision_failures.append((reason, message))

    def fail_revisions_with_image(self, image: str, reason: str = "CONTAINER_MISSING", message: str = "") -> None:
        """Every new revision whose ingress image is `image` fails (until `clear_image_failure`)."""
        with self._lock:
            self._image_failures[image] = (reason, message or f"Image '{image}' not found.")

    def clear_image_failure(self, image: str) -> None:
        with self._lock:
            self._image_failures.pop(image, None)

    def fail_next_operation(
        self, code: grpc.StatusCode = grpc.StatusCode.INTERNAL, message: str = "Injected operation failure."
    ) -> None:
        """The next accepted Create/Update/DeleteService or DeleteRevision changes nothing and
        returns an operation that ends with this error (after any configured polls)."""
        if code is grpc.StatusCode.OK:
            raise ValueError("an operation error needs a non-OK code")
        with self._lock:
            self._operation_failures.append((code, message))

    def operation_polls(self, n: int) -> None:
        """New operations report `done=False` to creation and their first `n` GetOperation calls."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._polls = n

    def reset(self) -> None:
        """Drop all faults, delays, pending revision failures and the call log; polls back to the config."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._revision_failures.clear()
            self._image_failures.clear()
            self._operation_failures.clear()
            self._calls.clear()
            self._metadata.clear()
            self._polls = self._default_polls

    # -- observation -----------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        """A copy of every RPC received so far, in arrival order (faulted ones included)."""
        with self._lock:
            return list(self._calls)

    @property
    def call_metadata(self) -> list[Metadata]:
        """Invocation metadata of each call, index-aligned with `calls`."""
        with self._lock:
            return list(self._metadata)

    def calls_to(self, method_name: str) -> list[Any]:
        """Requests received by one method."""
        method = self._method(method_name)
        return [c.request for c in self.calls if c.method == method]

    def held(self, method: str) -> int:
        """Calls of `method` still sleeping in a delay: a test waits for 0 to know they went through."""
        with self._lock:
            return self._held.get(method, 0)

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()
            self._metadata.clear()

    # -- used by the emulator ----------------------------------------------------------------
    def before_call(
        self, method: str, request: Any, metadata: Metadata, transport: str = "grpc"
    ) -> tuple[grpc.StatusCode, str] | None:
        """Record the call, apply its delay, and return an injected fault to answer with."""
        with self._lock:
            self._calls.append(Call(method, request, transport))
            self._metadata.append(metadata)
            delay = self._delays.get(method, 0.0)
        if delay:
            with self._lock:
                self._held[method] = self._held.get(method, 0) + 1
            try:
                time.sleep(delay)
            finally:
                with self._lock:
                    self._held[method] -= 1
        with self._lock:
            faults = self._faults.get(method)
            if not faults:
                return None
            fault = faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                faults.popleft()
            return fault.code, fault.message

    def take_revision_failure(self, image: str) -> tuple[str, str] | None:
        with self._lock:
            if self._revision_failures:
                return self._revision_failures.popleft()
            return self._image_failures.get(image)

    def take_operation_failure(self) -> tuple[grpc.StatusCode, str] | None:
        with self._lock:
            return self._operation_failures.popleft() if self._operation_failures else None

    @property
    def polls(self) -> int:
        with self._lock:
            return self._polls
