"""`tfms up`: the whole product on one machine, offline.

An in-process Cloud Run emulator whose revisions run as local model servers behind a
router, fed through the same reconcile path as `tfms apply` with the real client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from tfms.api.defaults import Defaults
from tfms.cli.apply import apply_all, parse_all, results_table, tag_urls
from tfms.cli.env import UsageError
from tfms.cli.files import load
from tfms.plan.convergence import Phase
from tfms.reconcile.preflight import ModelCheck

if TYPE_CHECKING:
    from tfms.emulator.local import LocalExecutor

LOCAL_PROJECT = "tfms-local"


def _urls(results: list) -> list[str]:  # type: ignore[type-arg]
    lines = []
    for r in results:
        live = r.live or {}
        lines.append(f"{r.svc.name}: {live.get('uri', '-')}")
        lines.extend(f"  tag {tag}: {uri}" for tag, uri in tag_urls(r))
        lines.append(f"  predict: curl -s -d '{{\"instances\": [1.0]}}' "
                     f"{live.get('uri', '')}/v1/models/{r.svc.model.name}:predict")
    return lines


def local_executor() -> LocalExecutor:
    """Revisions as local model servers; a TFMS_* setting they cannot use is a UsageError naming it."""
    from tfms.emulator.local import LocalExecutor

    try:
        return LocalExecutor()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def up(files: list[str], *, host: str, port: int, timeout: float, model_check: ModelCheck | None = None) -> int:
    from tfms.emulator import Emulator, EmulatorConfig

    env_defaults = Defaults.from_env(os.environ)
    defaults = Defaults(project=env_defaults.project or LOCAL_PROJECT, region=env_defaults.region,
                        image=env_defaults.image)
    services = parse_all(load(files), defaults)

    executor = local_executor()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    emulator = Emulator(EmulatorConfig(), executor=executor)
    try:
        address = emulator.start(host, port, rest_port=0)
        print(f"Cloud Run emulator: {address}  (tfms apply --endpoint {address} -f FILE)", flush=True)
        print(f"Canary analysis reads the router's figures: tfms apply --endpoint {address} "
              f"--metrics {emulator.rest_url} -f FILE", flush=True)
        print(f"Emulator REST and control interface: {emulator.rest_url}  (see tfms emulator --help)", flush=True)
        # The model is read before its revision starts: a mistake is named here, not in a container log.
        results = asyncio.run(apply_all(services, address, timeout=timeout, interval=0.2, model_check=model_check))
        print(results_table(results), flush=True)
        if not all(r.state.phase is Phase.READY for r in results):
            print("tfms up: not every service became ready; stopping.", flush=True)
            return 1
        print("\n".join(_urls(results)), flush=True)
        print(f"status page: {emulator.status_url}  (revisions, traffic, live requests, rollouts)", flush=True)
        print("tfms up: serving. Press Ctrl-C to stop.", flush=True)
        stop.wait()
        print("tfms up: stopping.", flush=True)
        return 0
    finally:
        emulator.stop()
        executor.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
