"""The operator's service layer: one TFModelService object in, status and events out.

kopf-free, so the handlers stay a thin translation of `Outcome` into kopf's retry semantics,
and every decision here is testable without a cluster. A pass never waits on Cloud Run: it
writes at most once, reads where things stand, and says when to look again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from tfms.api import names
from tfms.api.conditions import READY, TRUE, camel
from tfms.api.defaults import Defaults, with_defaults
from tfms.api.errors import SpecInvalid
from tfms.api.guardrails import enforce_policies
from tfms.api.model import TFModelService
from tfms.api.validation import generation_of, parse
from tfms.backends.errors import BackendError, NotFound, NotOwned, Permanent, RevisionNameConflict, Transient
from tfms.plan.convergence import Phase, convergence
from tfms.plan.rollout import Phase as RolloutPhase
from tfms.plan.service import Action, owned_by
from tfms.plan.status import Observation, build_status
from tfms.reconcile.iam import AccessResult, apply_iam
from tfms.reconcile.preflight import ModelCheck
from tfms.reconcile.retry import Backoff
from tfms.reconcile.rollout import RolloutActionRefused, RolloutContext
from tfms.reconcile.service import CloudRunAPI, apply_service
from tfms.render.cloudrun import RenderedService, ownership_labels, render_service

Doc = dict[str, Any]
ONE_TRY = Backoff(attempts=1)  # kopf owns retries for the operator, with its own backoff


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    status: Doc
    events: list[Event] = field(default_factory=list)
    done: bool = False  # nothing left to wait for (ready, failed or invalid)
    transient: str = ""  # retry soon: the message
    permanent: str = ""  # stop until the spec changes: the message
    wait: float | None = None  # a rollout step is due in this many seconds

    @property
    def ready(self) -> bool:
        return any(c["type"] == READY and c["status"] == TRUE for c in self.status.get("conditions", []))


def _ready(status: Mapping[str, Any] | None) -> str:
    for cond in (status or {}).get("conditions", []) or []:
        if isinstance(cond, Mapping) and cond.get("type") == READY:
            return str(cond.get("status", ""))
    return ""


def _change_events(action: Action, changes: list[str], drift: bool, name: str, revision: str) -> list[Event]:
    if action is Action.CREATE:
        return [Event("Normal", "Created", f"created Cloud Run service {name} with revision {revision}")]
    if action is not Action.UPDATE:
        return []
    events = []
    if drift:
        events.append(Event("Warning", "DriftCorrected", "Cloud Run differed from the spec: " + "; ".join(changes)))
    if any(c.startswith("template") for c in changes):
        events.append(Event("Normal", "RevisionCreated", f"deploying revision {revision}"))
    if any(c.startswith("traffic") for c in changes):
        events.append(Event("Normal", "TrafficChanged", "traffic split updated"))
    if not events:
        events.append(Event("Normal", "Updated", "; ".join(changes)))
    return events


async def reconcile_object(api: CloudRunAPI, body: Mapping[str, Any], defaults: Defaults, *, now: str,
                           rollout: RolloutContext | None = None, iam: object | None = None,
                           policies: Sequence[Mapping[str, Any]] = (),
                           model_check: ModelCheck | None = None) -> Outcome:
    """One pass over one object. Safe to run at any time, any number of times.

    `iam` is the IAM-capable backend when `api` is not (e.g. a snapshot reader); `policies` are
    the cluster's TFModelServicePolicy objects, enforced like the schema; `model_check` reads the
    model before any Cloud Run write, once per generation (tfms.reconcile.preflight)."""
    raw_metadata, raw_status = body.get("metadata"), body.get("status")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    generation = generation_of(metadata)
    previous: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
    try:
        svc = parse(body, defaults, f"{metadata.get('namespace')}/{metadata.get('name')}")
        enforce_policies(policies, body, defaults)
    except SpecInvalid as exc:
        errors = [str(e) for e in exc.errors]
        status = build_status(Observation(generation, invalid=errors), previous, now=now)
        return Outcome(status, [Event("Warning", "InvalidSpec", "; ".join(errors))], done=True,
                       permanent="; ".join(errors))
    rendered = render_service(svc)
    if svc.paused:
        status = build_status(Observation(generation, rendered.revision, paused=True), previous, now=now)
        return Outcome(status, done=True)
    if model_check is None:
        return await _deploy(api, svc, rendered, generation, previous, now=now, rollout=rollout, iam=iam)
    verdict = await model_check.verdict(svc, generation, previous)
    if verdict.stop:  # before any Cloud Run write: the model would not serve, or storage is unavailable
        obs = Observation(generation, rendered.revision, error_reason=verdict.reason, error_message=verdict.message)
        outcome = Outcome(build_status(obs, previous, now=now), done=verdict.stop == "permanent",
                          permanent=verdict.message if verdict.stop == "permanent" else "",
                          transient=verdict.message if verdict.stop == "transient" else "")
    else:
        outcome = await _deploy(api, svc, rendered, generation, previous, now=now, rollout=rollout, iam=iam)
    return replace(outcome, status=verdict.record(outcome.status, previous, now=now, generation=generation),
                   events=[Event("Normal" if kind == "Normal" else "Warning", reason, message)
                           for kind, reason, message in verdict.events] + outcome.events)


async def _deploy(api: CloudRunAPI, svc: TFModelService, rendered: RenderedService, generation: int,
                  previous: Mapping[str, Any], *, now: str, rollout: RolloutContext | None,
                  iam: object | None) -> Outcome:
    """The Cloud Run part of a pass: write at most once, then read where things stand."""
    refused: list[Event] = []
    try:
        try:
            applied = await apply_service(api, svc, ONE_TRY, rollout)
        except RolloutActionRefused as exc:
            refused.append(Event("Warning", "RolloutActionRefused", str(exc)))
            applied = await apply_service(api, svc, ONE_TRY, replace(rollout, action=None) if rollout else None)
        live = applied.live if applied.plan.action is Action.NONE else await api.get_service(rendered.name)
        access: AccessResult = await apply_iam(api if iam is None else iam, svc, live)
    except (NotOwned, RevisionNameConflict, Permanent) as exc:
        reason = type(exc).__name__ if isinstance(exc, (NotOwned, RevisionNameConflict)) else camel(
            _enum(exc.code)) or "CloudRunRefused"
        obs = Observation(generation, rendered.revision, error_reason=reason, error_message=str(exc))
        return Outcome(build_status(obs, previous, now=now), [Event("Warning", reason, str(exc))], done=True,
                       permanent=str(exc))
    except Transient as exc:
        obs = Observation(generation, rendered.revision, error_reason="CloudRunUnavailable", error_message=str(exc))
        return Outcome(build_status(obs, previous, now=now), transient=str(exc))

    decision = applied.rollout
    # Drift is Cloud Run moving away from a spec it had converged to; an update that finishes a spec
    # change after a failed pass (same observedGeneration, never Ready at it) is not drift.
    drift = (generation == previous.get("observedGeneration") and _ready(previous) == TRUE
             and applied.plan.action is Action.UPDATE and not (decision and decision.events))
    events = refused + _change_events(applied.plan.action, applied.plan.changes, drift, rendered.service_id,
                                      rendered.revision)
    events += [Event(kind, reason, message) for kind, reason, message in access.events]
    if decision is not None:
        events = [e for e in events if e.reason != "TrafficChanged"]
        events += [Event("Normal" if kind == "Normal" else "Warning", reason, message)
                   for kind, reason, message in decision.events]
    state = convergence(live, rendered.revision) if live else None
    obs = Observation(generation, rendered.revision, live=live, convergence=state,
                      rollout=decision.shown if decision else None)
    status = build_status(obs, previous, now=now)
    status["access"] = access.status
    # A rollout paused at a gate waits for a person (an annotation or `tfms rollout resume`), not a timer.
    rolling = applied.rolling and not (decision is not None and decision.state.phase is RolloutPhase.PAUSED)
    outcome = Outcome(status, events, done=bool(state and state.done and applied.plan.action is Action.NONE
                                                   and not rolling),
                      wait=decision.wait if decision and rolling else None)
    if access.writes:  # the service annotation changed too: look again once Cloud Run has it
        outcome = replace(outcome, done=False)
    if _ready(status) == TRUE and _ready(previous) != TRUE:
        events.append(Event("Normal", "Ready", f"serving at {status.get('url', '')}"))
    if state is not None and state.phase is Phase.FAILED:
        if _ready(previous) != "False":
            events.append(Event("Warning", state.reason, state.message))
        return Outcome(status, events, done=True, permanent=f"{state.reason}: {state.message}")
    return outcome


def _enum(code: str) -> str:
    """`PermissionDenied` (an exception class name) as PERMISSION_DENIED."""
    out = "".join(f"_{c}" if c.isupper() else c for c in code).lstrip("_").upper()
    return out


class CloudRunDeleteAPI(CloudRunAPI, Protocol):
    async def delete_service(self, name: str) -> None:
        """Must treat a service that is already gone as deleted."""
        ...

    async def set_labels(self, name: str, labels: dict[str, str], etag: str = "") -> None: ...


async def finalize_object(api: CloudRunDeleteAPI, body: Mapping[str, Any], defaults: Defaults) -> str:
    """Delete (or abandon) the Cloud Run service this object owns; what happened, in words.

    Raises `BackendError` when Cloud Run could not be changed, so the finalizer stays and the
    deletion is retried (B-037): an orphaned service is never the price of a failed call.
    """
    metadata = body.get("metadata") or {}
    spec = with_defaults(body.get("spec") or {}, defaults) if isinstance(body.get("spec"), Mapping) else {}
    try:
        svc = parse(body, defaults)
    except SpecInvalid:
        if not (body.get("status") or {}).get("service"):
            return "nothing to delete: the spec never validated, so no Cloud Run service was created"
        svc = None
    name = str((body.get("status") or {}).get("service") or "") or (
        names.service_name(spec.get("project", ""), spec.get("region", ""), str(metadata.get("name", ""))))
    try:
        live = await api.get_service(name)
    except NotFound:
        live = None
    if live is None:
        return f"Cloud Run service {name} is already gone"
    labels = live.get("labels") or {}
    want = ownership_labels(svc) if svc else {
        names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
        names.LABEL_NAMESPACE: str(metadata.get("namespace", "")), names.LABEL_NAME: str(metadata.get("name", "")),
        **({names.LABEL_UID: str(metadata["uid"])} if metadata.get("uid") else {})}
    if not owned_by(labels, want):
        return f"left Cloud Run service {name} alone: tfms does not own it"
    policy = spec.get("deletionPolicy", "Delete")
    if policy == "Abandon":
        kept = {k: v for k, v in labels.items() if k not in names.OWNERSHIP_LABELS}
        await api.set_labels(name, kept, str(live.get("etag", "")))
        return f"abandoned Cloud Run service {name}: ownership labels removed, service kept"
    await api.delete_service(name)  # a service gone meanwhile counts as deleted
    if await api.get_service(name) is not None:  # the delete operation failed, or has not finished yet
        raise Transient(f"Cloud Run service {name} still exists after the delete call; the finalizer stays "
                        "and the deletion is checked again")
    return f"deleted Cloud Run service {name}"


__all__ = ["BackendError", "Event", "Outcome", "finalize_object", "reconcile_object"]
