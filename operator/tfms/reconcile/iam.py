"""Apply `spec.access` to a Cloud Run service's IAM policy: the invoker step of a reconcile.

Independent of the service step (B-013): it uses only Get/SetIamPolicy plus a field-masked
update of the service's `tfms.dev/invokers` annotation (the record of what tfms granted) and,
for a public service where the organisation forbids allUsers, of `invoker_iam_disabled`.
Every policy write is an etag read-modify-write; a conflict re-reads and retries with backoff
(B-017). Nothing is written when nothing changes. Every change is an event and an audit log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from tfms.api import names
from tfms.api.model import TFModelService
from tfms.backends.errors import EtagConflict, Permanent, PublicMembersBlocked
from tfms.plan.iam import (
    IamPlan,
    Policy,
    desired_members,
    has_intent,
    managed_annotation,
    managed_members,
    plan_invokers,
)
from tfms.reconcile.retry import Backoff

Doc = dict[str, Any]
log = logging.getLogger("tfms.audit")
# Conflicts resolve with a fresh read; a short, bounded ladder whatever the caller's own retry policy.
IAM_BACKOFF = Backoff(attempts=6, initial=0.1, maximum=5.0)
PUBLIC_VIA_IAM_DISABLED = (
    "public through invoker_iam_disabled: the organisation forbids allUsers (Domain Restricted Sharing)")


@runtime_checkable
class IamAPI(Protocol):
    """What the invoker step needs (tfms.backends.cloudrun.CloudRun has it)."""

    async def get_service(self, name: str) -> Doc | None: ...

    async def get_iam_policy(self, resource: str) -> Policy: ...

    async def set_iam_policy(self, resource: str, policy: Policy) -> Policy: ...

    async def update_service_fields(self, name: str, fields: Doc, etag: str = "") -> str: ...


@dataclass(frozen=True)
class AuditEntry:
    """One IAM change: who made it, to which member and role, and the role's members before and after."""

    service: str
    member: str
    role: str
    action: Literal["grant", "revoke", "invoker-iam-disabled"]
    before: tuple[str, ...]
    after: tuple[str, ...]
    who: str = names.AUDIT_ACTOR

    @property
    def message(self) -> str:
        if self.action == "invoker-iam-disabled":
            return f"{self.who} set invoker_iam_disabled on {self.service}: {PUBLIC_VIA_IAM_DISABLED}"
        verb = "granted" if self.action == "grant" else "revoked"
        return (f"{self.who} {verb} {self.role} {'to' if self.action == 'grant' else 'from'} {self.member} on "
                f"{self.service}: [{', '.join(self.before)}] -> [{', '.join(self.after)}]")


@dataclass(frozen=True)
class AccessResult:
    """What the invoker step did, for events and `status.access`."""

    status: Doc = field(default_factory=dict)
    audit: tuple[AuditEntry, ...] = ()
    events: tuple[tuple[Literal["Normal", "Warning"], str, str], ...] = ()
    writes: int = 0


def _audit(entry: AuditEntry) -> None:
    log.info(entry.message, extra={
        "audit": True, "who": entry.who, "service": entry.service, "member": entry.member, "role": entry.role,
        "action": entry.action, "before": list(entry.before), "after": list(entry.after)})


def _status(svc: TFModelService, plan: IamPlan | None, disabled: bool) -> Doc:
    status: Doc = {"invokersMode": svc.access.invokers_mode}
    if plan is not None:
        status["managedInvokers"] = list(plan.managed)
        if plan.foreign:
            status["otherInvokers"] = list(plan.foreign)
    if svc.access.public:
        status["public"] = "invokerIamDisabled" if disabled else names.ALL_USERS
        if disabled:
            status["message"] = PUBLIC_VIA_IAM_DISABLED
    return status


def _annotations(live: Mapping[str, Any], managed: tuple[str, ...]) -> dict[str, str]:
    """The service's own annotations with the record replaced (an annotations mask replaces the map);
    system annotations are Cloud Run's to set, never ours to send back."""
    kept = {k: str(v) for k, v in (live.get("annotations") or {}).items()
            if not any(k.startswith(p) for p in names.RESERVED_KEY_PREFIXES)}
    kept[names.INVOKERS_ANNOTATION] = managed_annotation(managed)
    return kept


async def apply_iam(api: object, svc: TFModelService, live: Mapping[str, Any] | None,
                    backoff: Backoff = IAM_BACKOFF) -> AccessResult:
    """Make roles/run.invoker match `svc.access`; `live` is the service as just read (its etag and
    annotations). Raises `EtagConflict` once retries run out, `Permanent` when Cloud Run refuses."""
    if live is None:
        return AccessResult({"invokersMode": svc.access.invokers_mode, "message": "waiting for the service"})
    managed = managed_members(live)
    disabled = bool(live.get("invokerIamDisabled"))
    if not has_intent(svc.access, managed):
        return AccessResult(_status(svc, None, disabled))
    if not isinstance(api, IamAPI):
        raise Permanent(f"spec.access: this Cloud Run backend cannot manage IAM ({type(api).__name__})")
    name = str(live.get("name") or "")
    blocked = False
    audit: list[AuditEntry] = []
    writes = 0
    for attempt in range(backoff.attempts):
        current = await api.get_iam_policy(name)
        plan = plan_invokers(current, desired_members(svc.access, not (disabled or blocked)), managed,
                             svc.access.authoritative)
        if plan.policy is None:
            break
        try:
            await api.set_iam_policy(name, plan.policy)
        except EtagConflict as exc:
            if attempt == backoff.attempts - 1:
                raise
            log.info("IAM policy of %s changed while tfms wrote it; reading it again", name,
                     extra={"service": name, "attempt": attempt + 1, "error": str(exc)})
            await asyncio.sleep(backoff.delay(attempt))
            continue
        except PublicMembersBlocked:
            if blocked or names.ALL_USERS not in plan.added:
                raise
            blocked = True  # plan again without allUsers; public goes through invoker_iam_disabled
            continue
        writes += 1
        role = names.INVOKER_ROLE
        audit += [AuditEntry(name, m, role, "grant", plan.before, plan.after) for m in plan.added]
        audit += [AuditEntry(name, m, role, "revoke", plan.before, plan.after) for m in plan.removed]
        break
    else:  # pragma: no cover - the loop either breaks or raises
        raise EtagConflict(f"set IAM policy of {name}: still conflicting after {backoff.attempts} attempts")

    fields: Doc = {}
    if managed_annotation(plan.managed) != managed_annotation(managed):
        fields["annotations"] = _annotations(live, plan.managed)
    if blocked and not disabled:
        fields["invokerIamDisabled"] = True
        audit.append(AuditEntry(name, names.ALL_USERS, names.INVOKER_ROLE, "invoker-iam-disabled",
                                plan.before, plan.after))
    if fields:
        await _update_fields(api, name, live, fields, backoff)
        writes += 1
    for entry in audit:
        _audit(entry)
    events: list[tuple[Literal["Normal", "Warning"], str, str]] = []
    for entry in audit:
        if entry.action == "invoker-iam-disabled":
            events.append(("Warning", "PublicViaInvokerIamDisabled", entry.message))
        else:
            events.append(("Normal", "InvokerGranted" if entry.action == "grant" else "InvokerRevoked",
                           entry.message))
    return AccessResult(_status(svc, plan, disabled or blocked), tuple(audit), tuple(events), writes)


async def _update_fields(api: IamAPI, name: str, live: Mapping[str, Any], fields: Doc, backoff: Backoff) -> None:
    """A masked service update with the etag just read; on a conflict, read again and rebuild the
    annotations from the fresh service so another writer's annotations are kept."""
    current: Mapping[str, Any] = live
    for attempt in range(backoff.attempts):
        body = dict(fields)
        if "annotations" in body:
            record = body["annotations"][names.INVOKERS_ANNOTATION]
            body["annotations"] = {**_annotations(current, ()), names.INVOKERS_ANNOTATION: record}
        try:
            await api.update_service_fields(name, body, str(current.get("etag", "")))
            return
        except EtagConflict:
            if attempt == backoff.attempts - 1:
                raise
            await asyncio.sleep(backoff.delay(attempt))
            fresh = await api.get_service(name)
            if fresh is None:
                raise Permanent(f"{name}: the service disappeared while tfms recorded its invokers") from None
            current = fresh
