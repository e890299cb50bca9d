"""kopf handlers: translate `reconcile.objects` outcomes into kopf's retry semantics.

- create/update/resume: one reconcile pass; still converging -> TemporaryError(poll), a
  transient failure -> TemporaryError(backoff), a permanent one -> PermanentError (no retry
  until the spec changes). Status is patched only with what changed.
- a timer re-reads converged objects for drift at a slow cadence.
- delete: a finalizer that is released only once Cloud Run is changed (B-037).
Spec is never written.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from tfms.api import names
from tfms.backends.cloudrun import CloudRun
from tfms.backends.errors import BackendError
from tfms.backends.metrics import metrics_source
from tfms.handlers.admission import configure_admission, policies_from
from tfms.handlers.config import OperatorConfig
from tfms.plan.rollout import Action
from tfms.plan.status import status_patch
from tfms.reconcile.objects import CloudRunDeleteAPI, Outcome, finalize_object, reconcile_object
from tfms.reconcile.preflight import ModelCheck
from tfms.reconcile.rollout import RolloutContext
from tfms.reconcile.snapshot import ServiceSnapshots, with_snapshot

RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
IDLE_WORKER_SECONDS = 0.5
log = logging.getLogger("tfms.operator")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf's own bookkeeping goes to annotations, so status holds only our declared fields
    (B-034) and status writes never look like spec changes (B-035). kopf ignores changes to
    annotations under its own prefix, so that prefix must not be the one users annotate with
    (tfms.dev/rollout-action)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.KOPF_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = "tfms.dev/finalizer"
    settings.posting.level = logging.WARNING
    # kopf keeps an object's worker task (its queue, last body, processing state: ~6 KB) this long
    # after its last event, 5 s by default: a restart resumes every object at once, and 1,000 idle
    # workers were ~6 MiB of the operator's RSS after the resume pass (issue 9). A worker still
    # waits for the echo of kopf's own patch (persistence.consistency_timeout) whatever this is,
    # and a later event simply starts a new one.
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS
    configure_admission(settings)  # the validating webhook, when TFMS_WEBHOOK_PORT is set


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    config: OperatorConfig = memo.get("config") or OperatorConfig.from_env()
    memo["config"] = config
    memo["cloudrun"] = CloudRun.connect(config.endpoint)  # inside kopf's loop: grpc.aio is loop-bound
    # Every pass goes through it: resyncs read shared List pages, writes mark them stale.
    memo["snapshots"] = ServiceSnapshots(memo["cloudrun"], ttl=config.snapshot_ttl)
    memo["metrics"] = metrics_source(config.metrics_url, config.endpoint)
    memo["model_check"] = ModelCheck.for_mode(config.model_check)  # None when TFMS_MODEL_CHECK=off
    # Bounds the Cloud Run calls in flight: a burst of objects queues here instead of at Cloud Run.
    memo["passes"] = asyncio.Semaphore(max(1, config.max_concurrent_passes))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    api = memo.get("cloudrun")
    if api is not None:
        await api.close()


def _publish(body: kopf.Body, patch: kopf.Patch, outcome: Outcome) -> None:
    for key, value in status_patch(body.get("status"), outcome.status).items():
        patch.status[key] = value
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1024])


def _context(memo: kopf.Memo, action: Action | None = None) -> RolloutContext:
    return RolloutContext(metrics=memo.get("metrics"), action=action)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, reason: str,
                    **_: Any) -> None:
    config: OperatorConfig = memo["config"]
    # A restart resumes every object at once: like a resync, it reads the shared snapshot.
    outcome = await _pass(memo, body, snapshot=reason == kopf.Reason.RESUME and retry == 0,
                          policies=policies_from(_))
    _publish(body, patch, outcome)
    if outcome.transient:
        raise kopf.TemporaryError(outcome.transient, delay=config.retry_delay(retry))
    if outcome.permanent:
        raise kopf.PermanentError(outcome.permanent)
    if not outcome.done:
        delay = config.poll_seconds if outcome.wait is None else min(config.poll_seconds, max(0.1, outcome.wait))
        raise kopf.TemporaryError("waiting for Cloud Run (or the rollout) to finish", delay=delay)


@kopf.on.create(*RESOURCE, annotations={names.ROLLOUT_ACTION_ANNOTATION: kopf.PRESENT})
@kopf.on.update(*RESOURCE, annotations={names.ROLLOUT_ACTION_ANNOTATION: kopf.PRESENT})
async def rollout_action(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """kubectl annotate tfms NAME tfms.dev/rollout-action=promote|pause|resume|abort|rollback."""
    config: OperatorConfig = memo["config"]
    raw = str(body.metadata.annotations.get(names.ROLLOUT_ACTION_ANNOTATION, ""))
    patch.metadata.annotations[names.ROLLOUT_ACTION_ANNOTATION] = None  # applied once, then gone
    try:
        action = Action(raw)
    except ValueError:
        kopf.warn(body, reason="RolloutActionRefused",
                  message=f"unknown rollout action {raw!r}; use one of {', '.join(a.value for a in Action)}")
        return
    outcome = await reconcile_object(memo["snapshots"].reader(fresh=True), _plain(body), config.defaults,
                                     now=_now(), rollout=_context(memo, action), iam=memo["cloudrun"],
                                     policies=policies_from(_), model_check=memo.get("model_check"))
    _publish(body, patch, outcome)


def _resync_interval() -> float:
    return OperatorConfig.from_env().resync_seconds


@kopf.timer(*RESOURCE, interval=_resync_interval(), initial_delay=_resync_interval())
async def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int = 0, **_: Any) -> None:
    """Drift and readiness between spec changes; a converged object yields no write at all,
    and its read comes from the (project, region)'s shared ListServices snapshot."""
    outcome = await _pass(memo, body, snapshot=True, policies=policies_from(_))
    _publish(body, patch, outcome)
    if outcome.transient:
        log.warning("resync of %s/%s: %s", body.metadata.namespace, body.metadata.name, outcome.transient)
        # Look again with the backoff, never later than the next resync: a transient Ready=False
        # (CloudRunUnavailable) must not stay for a whole resync interval once Cloud Run is back.
        config: OperatorConfig = memo["config"]
        raise kopf.TemporaryError(outcome.transient, delay=min(config.retry_delay(retry), config.resync_seconds))


@kopf.on.delete(*RESOURCE)
async def delete(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    config: OperatorConfig = memo["config"]
    try:
        async with memo["passes"]:
            message = await finalize_object(memo["snapshots"].reader(fresh=True), _plain(body), config.defaults)
    except BackendError as exc:
        kopf.warn(body, reason="DeleteFailed", message=str(exc)[:1024])
        raise kopf.TemporaryError(str(exc), delay=config.retry_delay(retry)) from exc
    kopf.info(body, reason="Deleted", message=message)


async def _pass(memo: kopf.Memo, body: kopf.Body, *, snapshot: bool,
                policies: list[dict[str, Any]] | None = None) -> Outcome:
    """One reconcile pass; with `snapshot`, reads come from the shared List snapshot and a pass
    that would write is run again on fresh reads (tfms.reconcile.snapshot)."""
    config: OperatorConfig = memo["config"]
    snapshots: ServiceSnapshots = memo["snapshots"]

    async with memo["passes"]:
        # Copied only once admitted: objects applied together queue here, and their copies were
        # 2.4 MiB of the operator's converging peak with 300 objects (issue 9).
        plain = _plain(body)

        async def run(api: CloudRunDeleteAPI) -> Outcome:
            return await reconcile_object(api, plain, config.defaults, now=_now(), rollout=_context(memo),
                                          iam=memo["cloudrun"], policies=policies or [],
                                          model_check=memo.get("model_check"))

        if snapshot:
            return await with_snapshot(snapshots, run)
        return await run(snapshots.reader(fresh=True))


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """kopf's Body as plain dicts, for the kopf-free service layer, without
    `metadata.managedFields`: nothing here reads it, and it is half of a body's ~13 KB as dicts."""
    return {k: _thaw(v) if k != "metadata" or not isinstance(v, Mapping) else
            {mk: _thaw(mv) for mk, mv in v.items() if mk != "managedFields"} for k, v in body.items()}


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value
