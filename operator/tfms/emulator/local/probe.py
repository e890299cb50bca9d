"""Readiness as Cloud Run's default startup probe sees it: a TCP connect to the port.

TF Serving (and tfms.runtime) open the REST port only once the models are loaded, so a
successful connect is the same signal Cloud Run waits for before sending traffic.
"""

from __future__ import annotations

import asyncio
import contextlib


async def tcp_connects(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """One probe: does a TCP connection to host:port succeed?"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_until_listening(host: str, port: int, *, first_delay_s: float = 0.01, max_delay_s: float = 0.1) -> None:
    """Probe with a short exponential backoff until a connect succeeds (callers bound it).

    A refused connect on loopback costs microseconds, so probing often keeps the gap
    between "listening" and "ready" small without measurable load.
    """
    delay = first_delay_s
    while not await tcp_connects(host, port):
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)
