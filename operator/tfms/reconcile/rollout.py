"""Canary rollouts in a reconcile pass: read metrics when analysis needs them, then let the
pure state machine (`tfms.plan.rollout`) choose the traffic written with the service."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Any

from tfms.api.durations import parse_duration
from tfms.api.model import TFModelService
from tfms.backends.metrics import MetricsSource
from tfms.plan import rollout as machine
from tfms.render.cloudrun import RenderedService


@dataclass(frozen=True)
class RolloutContext:
    """What a pass may use beyond Cloud Run itself."""

    metrics: MetricsSource | None = None
    action: machine.Action | None = None  # an on-demand promote / pause / resume / abort / rollback
    now: float = field(default_factory=time.time)


class RolloutActionRefused(ValueError):
    """An on-demand action that makes no sense now (e.g. promote with no rollout running)."""


async def decide(svc: TFModelService, rendered: RenderedService, live: dict[str, Any] | None,
                 ctx: RolloutContext) -> machine.Decision:
    if ctx.action is not None:
        state = machine.state_of(live)
        if state is None or (state.revision != rendered.revision and ctx.action is not machine.Action.ROLLBACK):
            raise RolloutActionRefused(f"no rollout of {rendered.revision} to {ctx.action.value}")
        try:
            new_state, event = machine.apply_action(state, ctx.action, live)
        except ValueError as exc:
            raise RolloutActionRefused(str(exc)) from exc
        return machine.Decision(machine.traffic_for(new_state), new_state, [event])
    interval = parse_duration(svc.rollout.interval)
    first = machine.decide(svc.rollout, rendered.revision, live, ctx.now, None, interval)
    if first.metrics_window is None or ctx.metrics is None or not first.state.weight:
        return first
    revision, start = first.metrics_window
    stats = await ctx.metrics.window(rendered.name, f"{rendered.name}/revisions/{revision}", start, ctx.now)
    return machine.decide(svc.rollout, rendered.revision, live, ctx.now, stats, interval)


def with_rollout(rendered: RenderedService, decision: machine.Decision) -> RenderedService:
    """The desired service with the rollout's traffic and its state annotation."""
    body = copy.deepcopy(rendered.body)
    body["traffic"] = decision.traffic
    body["annotations"] = {**body.get("annotations", {}), machine.ANNOTATION: decision.state.to_json()}
    return replace(rendered, body=body)
