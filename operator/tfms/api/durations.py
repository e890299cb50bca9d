"""Durations as users write them in specs ('5m', '1h30m', '250ms'): one parser for the
validator and the rollout engine, so a spec that validates is one the engine can run."""

from __future__ import annotations


def parse_duration(text: str) -> float:
    """'5m', '30s', '1h30m', '250ms' -> seconds."""
    total, number = 0.0, ""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    i = 0
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            number += c
            i += 1
            continue
        unit = text[i:i + 2] if text[i:i + 2] == "ms" else c
        if unit not in units or not number:
            raise ValueError(f"not a duration: {text!r}")
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"not a duration (missing unit): {text!r}")
    return total
