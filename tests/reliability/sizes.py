"""CI size or long-run size for the reliability suites: `TFMS_LONG_TESTS=1` picks the long run."""

from __future__ import annotations

import os

LONG = os.environ.get("TFMS_LONG_TESTS", "") not in ("", "0", "false", "no")


def pick(ci: float, long: float) -> float:
    """The CI figure, or the long-run one under TFMS_LONG_TESTS=1."""
    return long if LONG else ci
