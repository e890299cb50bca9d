"""Operator settings from TFMS_* environment variables (no hard-coded paths)."""

from __future__ import annotations

import os
import random
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
    # TFMS_MAX_CONCURRENT_PASSES: passes (and deletions) in flight at once; the rest queue, so
    # a thousand objects applied together do not overload Cloud Run into UNAVAILABLE / 429.
    max_concurrent_passes: int = 32
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
            max_concurrent_passes=int(_float(env, "TFMS_MAX_CONCURRENT_PASSES", 32.0)),
            model_check=_mode(env),
            defaults=Defaults.from_env(env),
        )

    def retry_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential, capped, with equal jitter: a uniform draw from the upper half of the step.

        The jitter spreads the retries of many objects that failed together (one Cloud Run outage)
        instead of having them all return at the same instant; the floor at half the step keeps the
        bound a permanent outage costs: at most about 2 / retry_max tries per second per object."""
        cap = float(min(self.retry_max, self.retry_initial * 2 ** min(max(0, attempt), 64)))
        return cap / 2 + (rng or random).uniform(0, cap / 2)
