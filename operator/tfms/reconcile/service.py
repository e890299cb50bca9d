"""Reconcile one TFModelService: render, compare, write only when needed, then watch.

Shared by `tfms apply`, `tfms up` and the kopf handlers; it never blocks on a long-running
operation, it reads convergence from the service itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tfms.api.model import TFModelService
from tfms.backends.errors import NotOwned
from tfms.plan.convergence import Convergence, Phase, convergence
from tfms.plan.iam import with_iam_state
from tfms.plan.rollout import Decision
from tfms.plan.service import Action, Plan, plan_service
from tfms.reconcile.retry import DEFAULT_BACKOFF, Backoff, retry_transient
from tfms.reconcile.rollout import RolloutContext, with_rollout
from tfms.reconcile.rollout import decide as decide_rollout
from tfms.render.cloudrun import RenderedService, render_service

Doc = dict[str, Any]


class CloudRunAPI(Protocol):
    """What reconciliation needs from Cloud Run (tfms.backends.cloudrun.CloudRun has it)."""

    async def get_service(self, name: str) -> Doc | None: ...

    async def create_service(self, parent: str, service_id: str, body: Doc) -> str: ...

    async def update_service(self, name: str, body: Doc, etag: str = "") -> str: ...


@dataclass(frozen=True)
class Applied:
    """What one reconcile pass decided and did."""

    rendered: RenderedService  # as written (a canary's traffic and state included)
    plan: Plan
    live: Doc | None  # as read before any write
    rollout: Decision | None = None  # canary strategy only

    @property
    def rolling(self) -> bool:
        return self.rollout is not None and self.rollout.state.phase.active


async def desired_service(svc: TFModelService, rendered: RenderedService, live: Doc | None,
                          rollout: RolloutContext | None = None) -> tuple[RenderedService, Decision | None]:
    """What a pass would write given `live`: the spec's render, plus the state other steps keep on
    the service (IAM bookkeeping) and, for a canary, the rollout's traffic. `tfms diff` shows this too,
    so it never reports a change apply would not make."""
    rendered = with_iam_state(rendered, live, svc.access.public)  # what the IAM step owns survives a replace
    if svc.rollout.strategy != "canary":
        return rendered, None
    decision = await decide_rollout(svc, rendered, live, rollout or RolloutContext())
    return with_rollout(rendered, decision), decision


async def apply_service(api: CloudRunAPI, svc: TFModelService, backoff: Backoff = DEFAULT_BACKOFF,
                        rollout: RolloutContext | None = None) -> Applied:
    """One pass: at most one write, and none when nothing owned has changed."""
    rendered = render_service(svc)
    live = await retry_transient(lambda: api.get_service(rendered.name), backoff)
    rendered, decision = await desired_service(svc, rendered, live, rollout)
    plan = plan_service(rendered, live)
    if plan.action is Action.NOT_OWNED:
        raise NotOwned("; ".join(plan.changes))
    if plan.action is Action.CREATE:
        await retry_transient(
            lambda: api.create_service(rendered.parent, rendered.service_id, rendered.body), backoff)
    elif plan.action is Action.UPDATE:
        assert live is not None
        etag = str(live.get("etag", ""))
        await retry_transient(lambda: api.update_service(rendered.name, rendered.body, etag), backoff)
    return Applied(rendered, plan, live, decision)


Progress = Callable[[Convergence, Doc | None], None]


async def wait_converged(
    api: CloudRunAPI,
    rendered: RenderedService,
    *,
    timeout: float,
    interval: float = 1.0,
    progress: Progress | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> tuple[Convergence, Doc | None]:
    """Poll until Cloud Run says done (ready or failed) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    state = Convergence(Phase.PENDING, "Waiting", "waiting for Cloud Run")
    live: Doc | None = None
    while True:
        live = await retry_transient(lambda: api.get_service(rendered.name), backoff)
        if live is None:
            state = Convergence(Phase.PENDING, "NotFound", "service not visible yet")
        else:
            state = convergence(live, rendered.revision)
        if progress is not None:
            progress(state, live)
        if state.done:
            return state, live
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Convergence(Phase.FAILED, "Timeout",
                               f"not converged after {timeout:.0f}s: {state.reason} {state.message}".strip()), live
        await asyncio.sleep(min(interval, remaining))
