"""Operator settings from TFMS_* environment variables (no hard-coded paths)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tfms.api.defaults import Defaults
from tfms.reconcile.preflight import MODEL_CHECK_ENV, model_check_mode


def _float(env: Mapping[str, str], name: str, default: float, allow_zero: bool = False) -> float:
    raw = env.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"error: {name} must be a number of seconds, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise SystemExit(f"error: {name} must be positive, got {raw!r}")
    return value


def _mode(env: Mapping[str, str]) -> str:
    try:
        return model_check_mode(env.get(MODEL_CHECK_ENV))
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


@dataclass(frozen=True)
class OperatorConfig:
    endpoint: str | None = None  # Cloud Run emulator host:port; None = Google with ADC
    resync_seconds: float = 60.0  # how often a converged object is re-read (drift)
    poll_seconds: float = 5.0  # how often an object waiting on Cloud Run is re-read
    retry_initial: float = 2.0  # first delay after a transient error; doubles up to retry_max
    retry_max: float = 300.0
    metrics_url: str | None = None  # a tfms emulator's /_emulator/metrics; None: Cloud Monitoring
    snapshot_ttl: float = 5.0  # resyncs share one ListServices per project+region this long; 0: off
    model_check: str = "enforce"  # TFMS_MODEL_CHECK: enforce | warn | off (tfms.reconcile.preflight.ModelCheck)
    defaults: Defaults = field(default_factory=Defaults)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        return cls(
            endpoint=env.get("TFMS_CLOUDRUN_ENDPOINT") or None,
            resync_seconds=_float(env, "TFMS_RESYNC_SECONDS", 60.0),
            poll_seconds=_float(env, "TFMS_POLL_SECONDS", 5.0),
            retry_initial=_float(env, "TFMS_RETRY_INITIAL_SECONDS", 2.0),
            retry_max=_float(env, "TFMS_RETRY_MAX_SECONDS", 300.0),
            metrics_url=env.get("TFMS_METRICS_URL") or None,
            snapshot_ttl=_float(env, "TFMS_SNAPSHOT_TTL_SECONDS", 5.0, allow_zero=True),
            model_check=_mode(env),
            defaults=Defaults.from_env(env),
        )

    def retry_delay(self, attempt: int) -> float:
        """Exponential, capped: a permanent outage costs a bounded number of calls per hour."""
        return float(min(self.retry_max, self.retry_initial * 2 ** max(0, attempt)))
