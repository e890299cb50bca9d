"""Per-revision request metrics as the router, Cloud Run's front-end vantage point, saw them.

Counts must stay exact over the whole retention at any request rate (canary analysis
compares them with a minimum request count), and memory must stay bounded, so instead of
keeping samples each revision keeps one aggregate per wall-clock second for the last hour:
requests, 5xx responses and a log-scale latency histogram. Histogram bins are 2% wide, so a
percentile is within 1% of the exact one (Cloud Monitoring's distributions are coarser).

Threading: `record` runs on the router's event loop only and takes no lock; readers copy
what they need on that loop (through `run_on_owner`) and aggregate on their own thread.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")

RETENTION_S = 3600
MAX_SERIES_POINTS = 10_000
_LOG_GROWTH = math.log(1.02)
_INV_LOG_GROWTH = 1.0 / _LOG_GROWTH
_MIN_MS = 0.001  # anything faster shares the lowest bin
_SWEEP_EVERY_S = 60

# A closed second: (second, requests, errors, bins) with bins as interleaved bin, count.
_Closed = tuple[int, int, int, "array[int]"]


class OwnerRunner(Protocol):
    """Runs `fn` on the thread that records, and returns its result."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


def _run_here(fn: Callable[[], T]) -> T:
    return fn()


class _Second:
    """The open (current) second of one revision; mutated on the owner thread only."""

    __slots__ = ("bins", "errors", "requests", "second")

    def __init__(self, second: int) -> None:
        self.second = second
        self.requests = 0
        self.errors = 0
        self.bins: dict[int, int] = {}

    def close(self) -> _Closed:
        packed = array("q")
        for key in sorted(self.bins):
            packed.append(key)
            packed.append(self.bins[key])
        return (self.second, self.requests, self.errors, packed)


class _Revision:
    __slots__ = ("closed", "open")

    def __init__(self) -> None:
        self.closed: deque[_Closed] = deque(maxlen=RETENTION_S + 1)
        self.open: _Second | None = None


def _pairs(bins: array[int]) -> Iterator[tuple[int, int]]:
    it = iter(bins)
    return zip(it, it, strict=True)


def _percentile(histogram: dict[int, int], total: int, q: float) -> float | None:
    """Nearest-rank percentile: the geometric middle of the bin holding rank ceil(q * total)."""
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= rank:
            return round(math.exp((key + 0.5) * _LOG_GROWTH), 3)
    return None  # unreachable when `total` is the histogram's sum


class RouterMetrics:
    """Requests per revision full name: `record` on the hot path, `stats`/`series` for readers.

    Times are Unix seconds at second resolution: a window counts every whole second it
    touches. `run_on_owner` makes reads safe from other threads (the router passes one that
    hops onto its loop); the default suits single-threaded use.
    """

    def __init__(
        self,
        run_on_owner: OwnerRunner = _run_here,
        *,
        clock: Callable[[], float] = time.time,
        retention_s: int = RETENTION_S,
    ) -> None:
        self._run_on_owner = run_on_owner
        self._clock = clock
        self._retention = retention_s
        self._revisions: dict[str, _Revision] = {}
        self._next_sweep = 0

    # -- Hot path (owner thread) -------------------------------------------------------

    def record(self, revision: str, status: int, latency_s: float) -> None:
        """One response `revision` gave (or the router gave for it), `latency_s` as the client saw it."""
        second = int(self._clock())
        rev = self._revisions.get(revision)
        if rev is None:
            rev = self._revisions[revision] = _Revision()
        bucket = rev.open
        if bucket is None or bucket.second != second:
            bucket = self._roll(rev, second)
        bucket.requests += 1
        if status >= 500:
            bucket.errors += 1
        key = math.floor(math.log(max(latency_s * 1000.0, _MIN_MS)) * _INV_LOG_GROWTH)
        bins = bucket.bins
        bins[key] = bins.get(key, 0) + 1

    def _roll(self, rev: _Revision, second: int) -> _Second:
        """Close the open second (once per second per revision) and drop what is too old."""
        if rev.open is not None:
            rev.closed.append(rev.open.close())
        horizon = second - self._retention
        closed = rev.closed
        while closed and closed[0][0] < horizon:
            closed.popleft()
        rev.open = _Second(second)
        if second >= self._next_sweep:
            self._next_sweep = second + _SWEEP_EVERY_S
            self._sweep(horizon)
        return rev.open

    def _sweep(self, horizon: int) -> None:
        """Forget revisions that served nothing within the retention (stopped, deleted)."""
        idle = [
            name
            for name, rev in self._revisions.items()
            if (rev.open is None or rev.open.second < horizon) and (not rev.closed or rev.closed[-1][0] < horizon)
        ]
        for name in idle:
            del self._revisions[name]

    # -- Readers (any thread) ----------------------------------------------------------

    def _copy(self, revision: str, first: int, last: int) -> list[_Closed]:
        """The seconds of `revision` within [first, last]; runs on the owner thread."""
        rev = self._revisions.get(revision)
        if rev is None:
            return []
        out = [b for b in rev.closed if first <= b[0] <= last]
        bucket = rev.open
        if bucket is not None and first <= bucket.second <= last:
            out.append(bucket.close())
        return out

    def _seconds(self, revision: str, start: float, end: float) -> list[_Closed]:
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"need finite start <= end, got start={start} end={end}")
        first, last = math.floor(start), math.floor(end)
        return self._run_on_owner(lambda: self._copy(revision, first, last))

    def knows(self, revision: str) -> bool:
        """Whether `revision` served anything within the retention."""
        return self._run_on_owner(lambda: revision in self._revisions)

    def stats(self, revision: str, start: float, end: float) -> dict[str, float | int | None]:
        """`{requests, errors, p50_ms, p99_ms}` over [start, end]; percentiles are None without requests."""
        return _summary(self._seconds(revision, start, end), with_p50=True)

    def series(self, revision: str, start: float, end: float, step: float) -> list[dict[str, float | int | None]]:
        """One `{t, requests, errors, p99_ms}` per `step` seconds from `start` (empty steps included)."""
        step_s = round(step)
        if step_s < 1:
            raise ValueError(f"step must be at least 1 second, got {step}")
        seconds = self._seconds(revision, start, end)
        first, last = math.floor(start), math.floor(end)
        count = (last - first) // step_s + 1
        if count > MAX_SERIES_POINTS:
            raise ValueError(f"{count} points asked for; at most {MAX_SERIES_POINTS} (use a larger step)")
        groups: list[list[_Closed]] = [[] for _ in range(count)]
        for bucket in seconds:
            groups[(bucket[0] - first) // step_s].append(bucket)
        return [{"t": first + i * step_s, **_summary(group, with_p50=False)} for i, group in enumerate(groups)]


def _summary(seconds: Iterable[_Closed], *, with_p50: bool) -> dict[str, float | int | None]:
    requests = errors = 0
    histogram: dict[int, int] = {}
    for _, n, e, bins in seconds:
        requests += n
        errors += e
        for key, count in _pairs(bins):
            histogram[key] = histogram.get(key, 0) + count
    out: dict[str, float | int | None] = {"requests": requests, "errors": errors}
    if with_p50:
        out["p50_ms"] = _percentile(histogram, requests, 0.50)
    out["p99_ms"] = _percentile(histogram, requests, 0.99)
    return out
