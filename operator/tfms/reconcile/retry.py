"""Retries with exponential backoff and full jitter, for transient backend errors only."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tfms.backends.errors import Transient

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    attempts: int = 6
    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int) -> float:
        """Full jitter: spreads retries of many writers instead of synchronising them."""
        cap = min(self.maximum, self.initial * self.multiplier**attempt)
        return random.uniform(0, cap)


DEFAULT_BACKOFF = Backoff()


async def retry_transient(fn: Callable[[], Awaitable[T]], backoff: Backoff = DEFAULT_BACKOFF) -> T:
    for attempt in range(backoff.attempts):
        try:
            return await fn()
        except Transient:
            if attempt == backoff.attempts - 1:
                raise
            await asyncio.sleep(backoff.delay(attempt))
    raise AssertionError("unreachable")
