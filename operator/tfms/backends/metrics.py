"""Per-revision request metrics behind one interface (the canary analysis reads these).

`LocalMetrics` reads the local router's figures from a tfms emulator; Cloud Run's come from
Cloud Monitoring (`tfms.backends.monitoring`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import aiohttp

from tfms.backends.errors import BackendError, NotFound, Permanent, Transient
from tfms.plan.analysis import WindowStats


class MetricsSource(Protocol):
    async def window(self, service: str, revision: str, start: float, end: float) -> WindowStats:
        """Requests served by `revision` of `service` (full names) between two Unix times."""
        ...


METRICS_PATH = "/_emulator/metrics"


def metrics_source(url: str | None, endpoint: str | None = None) -> MetricsSource | None:
    """Where canary analysis reads: a tfms emulator at `url` (its REST URL or its
    /_emulator/metrics URL), else Cloud Monitoring. None for a Cloud Run emulator at `endpoint`
    without `url`: nothing there records requests, and Google must not be asked about it."""
    if url:
        return LocalMetrics(url)
    if endpoint:
        return None
    from tfms.backends.monitoring import CloudMonitoringMetrics  # the Monitoring client loads slowly

    return CloudMonitoringMetrics()


class LocalMetrics:
    """What the local router saw, from the emulator's `GET /_emulator/metrics` (`tfms up`, tests).

    `base_url` is the emulator's REST URL (`Emulator.rest_url`), with or without the
    /_emulator/metrics path. Without a `session` each
    call opens its own: a canary check runs once per interval, and a per-call session is
    bound to no event loop and needs no closing.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, session: aiohttp.ClientSession | None = None) -> None:
        base = base_url.rstrip("/")
        for suffix in (METRICS_PATH, "/_emulator"):
            base = base.removesuffix(suffix)
        self.base_url = base
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session

    async def window(self, service: str, revision: str, start: float, end: float) -> WindowStats:
        what = f"metrics of {revision}"
        query = {"service": service, "revision": revision, "start": repr(float(start)), "end": repr(float(end))}
        doc = await self._get(what, query)
        try:
            return WindowStats(
                requests=int(doc["requests"]),
                errors=int(doc["errors"]),
                p50_ms=_optional_ms(doc.get("p50_ms")),
                p99_ms=_optional_ms(doc.get("p99_ms")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Permanent(f"{what}: unexpected answer from {self.base_url}: {doc!r}", "INTERNAL") from exc

    async def _get(self, what: str, query: dict[str, str]) -> dict[str, Any]:
        url = self.base_url + METRICS_PATH
        try:
            if self._session is not None:
                return await self._fetch(self._session, what, url, query)
            async with aiohttp.ClientSession(timeout=self._timeout) as session:
                return await self._fetch(session, what, url, query)
        except BackendError:
            raise
        except TimeoutError as exc:
            raise Transient(f"{what}: {url} did not answer in time", "DEADLINE_EXCEEDED") from exc
        except aiohttp.ClientError as exc:  # refused, reset, DNS, broken payload
            raise Transient(f"{what}: cannot reach {url}: {exc}", "UNAVAILABLE") from exc

    async def _fetch(
        self, session: aiohttp.ClientSession, what: str, url: str, query: dict[str, str]
    ) -> dict[str, Any]:
        async with session.get(url, params=query, timeout=self._timeout) as response:
            text = await response.text()
            status = response.status
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if status >= 400:
            error = doc.get("error") if isinstance(doc, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            code = error.get("status") if isinstance(error, dict) else None
            detail = f"{what}: HTTP {status}: {message or text.strip()[:200]}"
            if status == 404:
                raise NotFound(detail, str(code or "NOT_FOUND"))
            if status >= 500:
                raise Transient(detail, str(code or "UNAVAILABLE"))
            raise Permanent(detail, str(code or "INVALID_ARGUMENT"))
        if not isinstance(doc, dict):
            raise Permanent(f"{what}: {url} answered with something other than a JSON object "
                            f"(not a tfms emulator?): {text[:200]!r}", "INTERNAL")
        return doc


def _optional_ms(value: Any) -> float | None:
    if value is None:
        return None
    ms = float(value)
    if not math.isfinite(ms):
        raise ValueError(f"not a latency: {value!r}")
    return ms
