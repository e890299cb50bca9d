"""`tfms rollout status|promote|pause|resume|abort|rollback`: watch or steer a canary.

The state lives on the Cloud Run service, so this works the same for services applied from
CI and for those an operator manages (which follows whatever this changes). In a cluster the
same actions are an annotation: kubectl annotate tfms NAME tfms.dev/rollout-action=promote.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from tfms.api.defaults import Defaults
from tfms.api.model import TFModelService
from tfms.backends.cloudrun import connected
from tfms.cli.apply import Result, apply_all, parse_all, results_table
from tfms.cli.env import UsageError, env_seconds, positive_seconds
from tfms.cli.files import load
from tfms.plan.convergence import Phase
from tfms.plan.rollout import Action, state_of
from tfms.plan.rollout import Phase as RolloutPhase
from tfms.render.cloudrun import render_service

ACTIONS = ("status", *(a.value for a in Action))


def _select(args: argparse.Namespace) -> list[TFModelService]:
    services = parse_all(load(args.files), Defaults.from_env(os.environ))
    if args.name:
        services = [s for s in services if s.name == args.name]
        if not services:
            raise UsageError(f"no TFModelService named {args.name} in {', '.join(args.files)}")
    canary = [s for s in services if s.rollout.strategy == "canary"]
    if not canary:
        raise SystemExit("error: none of these services uses rollout.strategy: canary")
    return canary


def status_rows(live: dict[str, Any] | None, svc: TFModelService) -> dict[str, Any]:
    state = state_of(live)
    row: dict[str, Any] = {"service": svc.name, "desiredRevision": render_service(svc).revision}
    if live is None:
        return {**row, "phase": "NotDeployed"}
    if state is None:
        return {**row, "phase": "NoRollout"}
    # Once promoted, the candidate is the stable revision and the old one is kept (0%, tag prev).
    promoted = state.phase is RolloutPhase.SUCCEEDED
    row.update(phase=state.phase.value, revision=state.revision,
               stable=state.revision if promoted else state.stable, step=state.step,
               weight=state.weight, message=state.message, analysis=state.analysis,
               stepStarted=state.step_started)
    if promoted and state.stable and state.stable != state.revision:
        row["previous"] = state.stable
    return row


def status_line(row: dict[str, Any]) -> str:
    """One service's rollout as `rollout status` prints it; steps count from 1 for people."""
    line = f"{row['service']}: {row['phase']}"
    if "revision" in row:
        waiting = row["step"] < 0 and row["phase"] in ("Progressing", "Paused")
        where = "not Ready yet" if waiting else f"step {max(row['step'], 0) + 1}"
        line += (f" | canary {row['revision']} {row['weight']}% ({where}), stable {row['stable'] or '-'}"
                 f" | {row['message']}")
    figures = row.get("analysis") or {}
    if figures:
        line += " | " + ", ".join(f"{k}={v}" for k, v in figures.items())
    return line


async def _status(services: list[TFModelService], endpoint: str | None, watch: bool, interval: float) -> int:
    async with connected(endpoint) as api:
        while True:
            rows = [status_rows(await api.get_service(render_service(s).name), s) for s in services]
            for row in rows:
                print(status_line(row), flush=True)
            if not watch or not any(r["phase"] in ("Progressing",) for r in rows):
                return 0
            await asyncio.sleep(interval)


def cmd_rollout(args: argparse.Namespace) -> int:
    interval = env_seconds(os.environ, "TFMS_POLL_INTERVAL", 1.0)
    services = _select(args)
    endpoint = args.endpoint or os.environ.get("TFMS_CLOUDRUN_ENDPOINT") or None
    if args.action == "status":
        if args.output == "json":
            async def rows() -> list[dict[str, Any]]:
                async with connected(endpoint) as api:
                    return [status_rows(await api.get_service(render_service(s).name), s) for s in services]
            print(json.dumps(asyncio.run(rows()), indent=2))
            return 0
        return asyncio.run(_status(services, endpoint, args.watch, interval))
    from tfms.backends.metrics import metrics_source

    started = time.monotonic()
    results = asyncio.run(apply_all(services, endpoint, wait=not args.no_wait, timeout=args.timeout,
                                    interval=interval, action=Action(args.action),
                                    metrics=metrics_source(args.metrics, endpoint)))
    if args.no_wait:
        print("\n".join(no_wait_lines(results, args.action)))
    else:
        print(results_table(results))
        print(f"({time.monotonic() - started:.1f}s)", file=sys.stderr)
    failed = [r for r in results if r.action == "error" or (
        r.state.phase is Phase.FAILED and not r.state.reason.startswith("Rollout"))]
    return 1 if failed else 0


def no_wait_lines(results: list[Result], action: str) -> list[str]:
    """What --no-wait wrote and that it did not wait: the traffic table would show Cloud Run as it
    was before the write, which reads as if the action had done nothing."""
    lines = []
    for r in results:
        if r.action == "error":
            lines.append(f"{r.svc.name}: {action} not written: {r.state.reason}: {r.state.message}")
        else:
            lines.append(f"{r.svc.name}: {action} written ({r.state.message}); not waiting for it "
                         f"(follow it with: tfms rollout status --watch {r.svc.name} -f FILE)")
    return lines


def add_parser(sub: Any) -> None:
    p = sub.add_parser("rollout", help="watch or steer a canary rollout: status, promote, pause, resume, abort, "
                       "rollback", description=__doc__)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("name", nargs="?", help="one service among the manifests (default: every canary one)")
    p.add_argument("-f", "--filename", dest="files", action="append", required=True, metavar="FILE|DIR")
    p.add_argument("--endpoint", help="a Cloud Run emulator host:port (else TFMS_CLOUDRUN_ENDPOINT, else Google)")
    p.add_argument("--metrics", default=os.environ.get("TFMS_METRICS_URL") or None,
                   help="per-revision metrics for the analysis: a tfms emulator's /_emulator/metrics URL "
                        "(default TFMS_METRICS_URL, else Cloud Monitoring)")
    p.add_argument("--watch", action="store_true", help="status: refresh until the rollout ends")
    p.add_argument("--no-wait", action="store_true", help="apply the action and return")
    p.add_argument("--timeout", type=positive_seconds, default=3600.0, help="seconds to wait for the rollout")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_rollout)
