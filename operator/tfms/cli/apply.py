"""`tfms apply`: validate everything first, then reconcile each service and wait."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TextIO

from tfms.api.defaults import Defaults
from tfms.api.errors import SpecInvalid
from tfms.api.model import TFModelService
from tfms.api.validation import duplicate_errors, parse
from tfms.backends.cloudrun import CloudRun, connected
from tfms.backends.errors import BackendError
from tfms.backends.metrics import MetricsSource
from tfms.cli.files import Manifest
from tfms.cli.output import ProgressView, describe, table, traffic_summary
from tfms.plan.convergence import Convergence, Phase
from tfms.plan.rollout import Action as RolloutAction
from tfms.plan.rollout import Phase as RolloutPhase
from tfms.reconcile.iam import AccessResult, apply_iam
from tfms.reconcile.preflight import ModelCheck
from tfms.reconcile.retry import retry_transient
from tfms.reconcile.rollout import RolloutActionRefused, RolloutContext
from tfms.reconcile.service import Applied, apply_service, wait_converged


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
    duplicates = duplicate_errors([(m.source, svc) for m, svc in zip(manifests, services, strict=True)])
    if duplicates:
        raise SpecInvalid([e for _, e in duplicates], "; ".join(source for source, _ in duplicates))
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
    metrics: MetricsSource | None = None,
    action: RolloutAction | None = None,
    model_check: ModelCheck | None = None,
) -> list[Result]:
    """Reconcile each service and wait for it; a canary rollout is followed step by step to its
    end (promoted, rolled back or failed), reading `metrics` for its analysis. With `model_check`,
    a model that would not serve is refused before any Cloud Run write."""
    view = ProgressView([s.name for s in services], stream or sys.stderr)
    gate = asyncio.Semaphore(concurrency)
    async with connected(endpoint) as api:

        async def one(svc: TFModelService) -> Result:
            async with gate:
                deadline = time.monotonic() + timeout
                ctx = RolloutContext(metrics=metrics, action=action)
                if model_check is not None:
                    verdict = await model_check.verdict(svc)
                    for _kind, _reason, message in verdict.events:
                        view.update(svc.name, message)
                    if verdict.stop:
                        return Result(svc, "error", Convergence(Phase.FAILED, verdict.reason, verdict.message), None)
                while True:
                    try:
                        applied = await apply_service(api, svc, rollout=replace(ctx, now=time.time()))
                        # one flaky IAM call is not a failure
                        access = await retry_transient(partial(_iam, api, svc, applied.rendered.name))
                    except (BackendError, RolloutActionRefused) as exc:
                        view.update(svc.name, f"Failed: {exc}")
                        return Result(svc, "error", Convergence(Phase.FAILED, type(exc).__name__, str(exc)), None)
                    ctx = replace(ctx, action=None)  # an on-demand action applies once
                    action_done = applied.plan.action.value
                    view.update(svc.name, _describe_pass(applied))
                    for _kind, _reason, message in access.events:  # also an audit log line each
                        view.update(svc.name, message)
                    if not wait:
                        ended = applied.rollout.shown if applied.rollout is not None else None
                        if ended is not None and ended.phase in _ROLLOUT_STOPS:  # this pass saw it end badly
                            return Result(svc, action_done, Convergence(
                                Phase.FAILED, f"Rollout{ended.phase.value}", ended.message), applied.live)
                        return Result(svc, action_done,
                                      Convergence(Phase.PENDING, "NotWaited", _describe_pass(applied)), applied.live)
                    try:
                        # Look again from the top now and then: a write whose long-running operation failed
                        # changed nothing and would never converge; planning again writes it again.
                        state, live = await wait_converged(
                            api, applied.rendered, interval=interval,
                            timeout=max(1.0, min(_replan_seconds(interval), deadline - time.monotonic())),
                            progress=lambda st, _live: view.update(svc.name, describe(st)),
                        )
                    except BackendError as exc:
                        return Result(svc, action_done, Convergence(Phase.FAILED, type(exc).__name__, str(exc)), None)
                    if state.reason == "Timeout" and time.monotonic() < deadline - 1.0:
                        continue
                    if applied.rolling and state.phase is Phase.FAILED:
                        # The candidate failed: one more pass writes that into the rollout state
                        # (Failed, with Cloud Run's reason), so `rollout status` does not wait forever.
                        with contextlib.suppress(BackendError):
                            recorded = await apply_service(api, svc, rollout=replace(ctx, now=time.time()))
                            view.update(svc.name, _describe_pass(recorded))
                    if not applied.rolling or state.phase is not Phase.READY:
                        return Result(svc, action_done, _rollout_outcome(applied, state), live)
                    if time.monotonic() >= deadline:
                        return Result(svc, action_done, Convergence(Phase.FAILED, "Timeout",
                                                                    "the rollout did not finish in time"), live)
                    assert applied.rollout is not None
                    rollout_state = applied.rollout.shown
                    if rollout_state.phase is RolloutPhase.PAUSED:  # a gate: someone must resume it
                        return Result(svc, action_done, Convergence(Phase.PENDING, "RolloutPaused",
                                                                    rollout_state.message), live)
                    view.update(svc.name, f"canary {rollout_state.revision} at {rollout_state.weight}%: "
                                f"{rollout_state.message}")
                    await asyncio.sleep(min(interval * 5, applied.rollout.wait or interval))

        return list(await asyncio.gather(*(one(s) for s in services)))


def _replan_seconds(interval: float) -> float:
    """How long to wait for a write to show before planning again (one Get, and a write only if lost)."""
    return max(2.0, 30 * interval)


async def _iam(api: CloudRun, svc: TFModelService, name: str) -> AccessResult:
    return await apply_iam(api, svc, await api.get_service(name))


def _describe_pass(applied: Applied) -> str:
    text = f"{applied.plan.action.value}: {'; '.join(applied.plan.changes) or 'up to date'}"
    if applied.rollout is not None:
        state = applied.rollout.shown
        text = f"{text} | rollout {state.phase.value}: {state.message}"
    return text


_ROLLOUT_STOPS = (RolloutPhase.FAILED, RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED)


def _rollout_outcome(applied: Applied, state: Convergence) -> Convergence:
    """A rollout that ended in rollback or failure is not Ready, even if Cloud Run converged."""
    if applied.rollout is None or state.phase is not Phase.READY:
        return state
    rollout = applied.rollout.state
    if rollout.phase is RolloutPhase.SUCCEEDED:
        return state
    return Convergence(Phase.FAILED, f"Rollout{rollout.phase.value}", rollout.message)


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


def tag_urls(result: Result) -> list[tuple[str, str]]:
    """(tag, URL) of each tagged traffic target: each reaches its revision whatever its percent."""
    statuses = (result.live or {}).get("trafficStatuses", []) or []
    return [(str(t["tag"]), str(t["uri"])) for t in statuses if t.get("tag") and t.get("uri")]


def tag_lines(results: list[Result]) -> list[str]:
    return [f"{r.svc.name} tag {tag}: {uri}" for r in results for tag, uri in tag_urls(r)]
