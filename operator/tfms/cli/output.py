"""What `tfms apply` and `tfms up` show: a live line per service, then a table."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from tfms.plan.convergence import Convergence, Phase


def traffic_summary(live: Mapping[str, Any] | None) -> str:
    if not live:
        return "-"
    parts = []
    for t in live.get("trafficStatuses", []) or []:
        revision = str(t.get("revision", "")).rsplit("/", 1)[-1]
        if not revision and t.get("type", "").endswith("LATEST"):
            revision = "latest:" + str(live.get("latestReadyRevision", "")).rsplit("/", 1)[-1]
        tag = f" ({t['tag']})" if t.get("tag") else ""
        parts.append(f"{revision} {int(t.get('percent', 0) or 0)}%{tag}")
    return ", ".join(parts) or "-"


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def describe(state: Convergence) -> str:
    if state.phase is Phase.READY:
        return "Ready"
    text = f"{state.phase.value}: {state.reason}"
    return f"{text} - {state.message}" if state.message else text


class ProgressView:
    """A live line per service on a terminal; plain lines (on change only) otherwise."""

    def __init__(self, services: Sequence[str], stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._names = list(services)
        self._lines = {name: "waiting" for name in services}
        self._tty = self._stream.isatty()
        self._drawn = False

    def update(self, name: str, text: str) -> None:
        if self._lines.get(name) == text:
            return
        self._lines[name] = text
        if not self._tty:
            print(f"{name}: {text}", file=self._stream, flush=True)
            return
        if self._drawn:
            self._stream.write(f"\x1b[{len(self._names)}F")
        for item in self._names:
            self._stream.write(f"\x1b[2K{item}: {self._lines[item]}\n")
        self._stream.flush()
        self._drawn = True
