"""Prometheus metrics on the REST port (`--monitoring_config_file`), TF Serving's names.

TF Serving exports its monitoring collection with `/` in metric names turned into `:`, so
`/tensorflow/serving/request_count` is scraped as `:tensorflow:serving:request_count`. The
local runtime keeps the two counters clients and dashboards use most: requests per model
and status, and SavedModel load attempts.
"""

from __future__ import annotations

import threading
from collections import Counter

CONTENT_TYPE = "text/plain; version=0.0.4"
REQUEST_COUNT = ":tensorflow:serving:request_count"
LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters, rendered in the Prometheus text exposition format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._loads: Counter[tuple[str, str]] = Counter()

    def request(self, model: str, status: str) -> None:
        with self._lock:
            self._requests[(model, status)] += 1

    def load_attempt(self, path: str, ok: bool) -> None:
        with self._lock:
            self._loads[(path, "success" if ok else "fail")] += 1

    def render(self) -> bytes:
        with self._lock:
            requests, loads = sorted(self._requests.items()), sorted(self._loads.items())
        lines = [f"# TYPE {REQUEST_COUNT} counter"]
        lines += [f'{REQUEST_COUNT}{{model_name="{_label(m)}",status="{_label(s)}"}} {n}' for (m, s), n in requests]
        lines.append(f"# TYPE {LOAD_ATTEMPT_COUNT} counter")
        lines += [f'{LOAD_ATTEMPT_COUNT}{{model_path="{_label(p)}",status="{s}"}} {n}' for (p, s), n in loads]
        return ("\n".join(lines) + "\n").encode()
