"""Logging set up once: JSON lines Cloud Logging understands off a terminal, text on one."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_SEVERITY = {
    logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
    logging.ERROR: "ERROR", logging.CRITICAL: "CRITICAL",
}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
# kopf attaches its whole OperatorSettings to every object log record: ~2 KB of repr per line,
# which the bench measured as a real share of the operator's CPU while converging (issue 9).
_DROPPED = _STANDARD | {"settings"}


class CloudLoggingFormatter(logging.Formatter):
    """`severity` and `message` are the keys Cloud Logging maps; extras become fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _DROPPED})
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    stream = sys.stderr
    use_json = (not stream.isatty()) if json_lines is None else json_lines
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        CloudLoggingFormatter() if use_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
