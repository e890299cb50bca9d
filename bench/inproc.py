"""The upper bound for the runtime benchmark: half_plus_two's `:predict` called in-process.

    python -m bench.inproc MODEL_DIR REQUESTS OUT.json [WAIT_PORT]

The same `RestApi.handle` the server runs (JSON in, JSON out, the model's session run) in a
plain loop on one thread: no HTTP, no sockets, no event loop. Its own process, so the bench
driver never imports tensorflow. With WAIT_PORT it loads while the server starts, but measures
only once that port is open, so the two never compete for the CPU while measured.
"""

from __future__ import annotations

import json
import socket
import sys
import time

from tfms.runtime.config import single_model_config
from tfms.runtime.models import ModelManager, default_loader
from tfms.runtime.rest import RestApi

PATH = "/v1/models/half_plus_two:predict"
BODY = b'{"instances": [1.0, 2.0, 5.0]}'


def _wait_port(port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def main(model_dir: str, requests: int, out: str, wait_port: int = 0) -> None:
    manager = ModelManager(default_loader(warmup=False))
    manager.load(single_model_config("half_plus_two", model_dir))
    api = RestApi(manager)
    if wait_port:
        _wait_port(wait_port)
    for _ in range(min(200, requests)):  # warm caches and the graph, as the server is warm
        api.handle("POST", PATH, BODY)
    latencies = []
    began = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        reply = api.handle("POST", PATH, BODY)
        latencies.append(time.perf_counter() - t)
        if reply.status != 200:
            raise SystemExit(f"in-process predict failed: {reply.status} {reply.body!r}")
    elapsed = time.perf_counter() - began
    latencies.sort()
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"requests": requests, "seconds": elapsed, "rps": requests / elapsed,
                   "p50_ms": latencies[len(latencies) // 2] * 1000,
                   "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000}, f)
    manager.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
