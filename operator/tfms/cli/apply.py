"""`tfms apply`: validate everything first, then reconcile each service and wait."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from tfms.api.defaults import Defaults
from tfms.api.errors import SpecInvalid
from tfms.api.model import TFModelService
from tfms.api.validation import parse
from tfms.backends.cloudrun import connected
from tfms.backends.errors import BackendError
from tfms.cli.files import Manifest
from tfms.cli.output import ProgressView, describe, table, traffic_summary
from tfms.plan.convergence import Convergence, Phase
from tfms.reconcile.service import apply_service, wait_converged


@dataclass
class Result:
    svc: TFModelService
    action: str
    state: Convergence
    live: dict[str, Any] | None


def parse_all(manifests: list[Manifest], defaults: Defaults) -> list[TFModelService]:
    """All-or-nothing: one invalid spec stops the run before any API call."""
    services, problems = [], []
    for m in manifests:
        try:
            services.append(parse(m.obj, defaults, m.source))
        except SpecInvalid as exc:
            problems.append(exc)
    if problems:
        raise SpecInvalid([e for p in problems for e in p.errors],
                          "; ".join(p.source for p in problems))
    seen: dict[str, str] = {}
    for svc in services:
        key = f"{svc.project}/{svc.region}/{svc.name}"
        if key in seen:
            raise SystemExit(f"error: two manifests define Cloud Run service {key}")
        seen[key] = svc.name
    return services


async def apply_all(
    services: list[TFModelService],
    endpoint: str | None,
    *,
    wait: bool = True,
    timeout: float = 600.0,
    interval: float = 1.0,
    concurrency: int = 16,
    stream: TextIO | None = None,
) -> list[Result]:
    view = ProgressView([s.name for s in services], stream or sys.stderr)
    gate = asyncio.Semaphore(concurrency)
    async with connected(endpoint) as api:

        async def one(svc: TFModelService) -> Result:
            async with gate:
                try:
                    applied = await apply_service(api, svc)
                except BackendError as exc:
                    view.update(svc.name, f"Failed: {exc}")
                    return Result(svc, "error", Convergence(Phase.FAILED, type(exc).__name__, str(exc)), None)
                action = applied.plan.action.value
                view.update(svc.name, f"{action}: {'; '.join(applied.plan.changes) or 'up to date'}")
                if not wait:
                    return Result(svc, action, Convergence(Phase.PENDING, "NotWaited"), applied.live)
                try:
                    state, live = await wait_converged(
                        api, applied.rendered, timeout=timeout, interval=interval,
                        progress=lambda st, _live: view.update(svc.name, describe(st)),
                    )
                except BackendError as exc:
                    return Result(svc, action, Convergence(Phase.FAILED, type(exc).__name__, str(exc)), None)
                return Result(svc, action, state, live)

        return list(await asyncio.gather(*(one(s) for s in services)))


def results_table(results: list[Result]) -> str:
    rows = []
    for r in results:
        live = r.live or {}
        rows.append([
            r.svc.name,
            str(live.get("uri", "-") or "-"),
            "True" if r.state.phase is Phase.READY else "False" if r.state.done else "Unknown",
            str(live.get("latestReadyRevision", "-") or "-").rsplit("/", 1)[-1],
            traffic_summary(live),
            "" if r.state.phase is Phase.READY else f"{r.state.reason}: {r.state.message}",
        ])
    return table(rows, ["SERVICE", "URL", "READY", "REVISION", "TRAFFIC", "REASON"])
