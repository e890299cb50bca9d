"""An ordered, single-threaded queue of calls into the executor.

The control plane decides what the executor must do while holding its lock, but must not
call the executor there (an executor thread may be blocked on that lock, waiting to report
a revision's outcome). Queuing under the lock and running the calls on one worker keeps
them in decision order, e.g. two `set_routes` for one service never swap.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Effect = Callable[[], None]


class EffectRunner:
    def __init__(self, name: str = "tfms-emulator-effects") -> None:
        self._queue: queue.Queue[Effect | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, effect: Effect) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(effect)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once every submitted effect has run (tests use this to observe the executor)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Run what is queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            effect = self._queue.get()
            if effect is None:
                return
            try:
                effect()
            except Exception:  # an executor bug must not kill the control plane
                log.exception("executor call failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
