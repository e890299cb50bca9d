"""Canary analysis: judge one step's metrics against the spec's thresholds (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tfms.api.model import Analysis


@dataclass(frozen=True)
class WindowStats:
    """Requests one revision served in a time window, as its front end saw them."""

    requests: int
    errors: int  # 5xx responses
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class Verdict(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"  # too few requests to judge yet


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)


def judge(stats: WindowStats, analysis: Analysis | None) -> Judgement:
    """PASS when every configured threshold holds over at least `minRequestCount` requests."""
    if analysis is None:
        return Judgement(Verdict.PASS, ["no analysis configured"])
    if stats.requests < analysis.min_request_count:
        return Judgement(Verdict.INCONCLUSIVE,
                         [f"{stats.requests} requests, need {analysis.min_request_count} to judge"])
    failures = []
    if analysis.max_error_rate is not None and stats.error_rate > analysis.max_error_rate:
        failures.append(f"error rate {stats.error_rate:.3f} above {analysis.max_error_rate}")
    if analysis.max_p99_latency_ms is not None and stats.p99_ms is not None \
            and stats.p99_ms > analysis.max_p99_latency_ms:
        failures.append(f"p99 latency {stats.p99_ms:.1f} ms above {analysis.max_p99_latency_ms} ms")
    if failures:
        return Judgement(Verdict.FAIL, failures)
    return Judgement(Verdict.PASS, [f"{stats.requests} requests, error rate {stats.error_rate:.3f}"
                                    + (f", p99 {stats.p99_ms:.1f} ms" if stats.p99_ms is not None else "")])
