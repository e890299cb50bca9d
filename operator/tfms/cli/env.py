"""Command-line and TFMS_* settings, checked where they are read.

Each check names the flag or variable and the rule, so a bad setting is one line and exit 2
rather than a traceback at parser build time, a port that silently wraps, or a zero poll
interval that spins. Flags are checked by argparse (`port`, `positive_seconds`); variables are
read lazily by the command that uses them, so a bad one never breaks unrelated subcommands.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")
PORT_MAX = 65535
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class UsageError(Exception):
    """A bad flag or environment value; its message names it and the rule (exit 2)."""


def _port(raw: str) -> int:
    """The port in `raw`, or ValueError with the rule."""
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"must be a port number 0-{PORT_MAX}, got {raw!r}") from None
    if not 0 <= value <= PORT_MAX:
        raise ValueError(f"must be a port number 0-{PORT_MAX}, got {raw!r}")
    return value


def _positive(raw: str) -> float:
    """Seconds in `raw` (finite, > 0), or ValueError with the rule."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"must be a number of seconds > 0, got {raw!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"must be a number of seconds > 0, got {raw!r}")
    return value


def port(raw: str) -> int:
    """argparse type for --port / --rest-port: 0-65535 (0 picks a free one)."""
    try:
        return _port(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_seconds(raw: str) -> float:
    """argparse type for --timeout: a wait of zero or less would never wait (or spin)."""
    try:
        return _positive(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def log_level(raw: str) -> str:
    """argparse type for --log-level: one of Python's level names, any case."""
    if raw.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.upper()


def _from_env(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T]) -> T:
    """`parse` of the variable when set, else `default`; a bad value is a UsageError naming it."""
    raw = env.get(name, "")
    try:
        return parse(raw) if raw else default
    except ValueError as exc:
        raise UsageError(f"{name} {exc}") from None


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    return _from_env(env, name, default, _port)


def env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    return _from_env(env, name, default, _positive)


def env_log_level(env: Mapping[str, str], name: str = "TFMS_LOG_LEVEL", default: str = "WARNING") -> str:
    raw = env.get(name, "")
    if not raw:
        return default
    if raw.upper() not in LOG_LEVELS:
        raise UsageError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.upper()
