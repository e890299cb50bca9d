"""Who may invoke a service: the next IAM policy, decided without I/O.

Cloud Run's SetIamPolicy replaces the whole policy, so every change is a read-modify-write of
the policy just read (its etag included, B-017). Only the `roles/run.invoker` binding is ever
changed. In the default (additive) mode tfms adds and removes only the members it granted
itself, so a grant made by someone else survives every tfms change (B-018); the authoritative
mode owns the whole binding and says so explicitly.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tfms.api import names
from tfms.api.model import AccessSpec
from tfms.render.cloudrun import RenderedService


@dataclass(frozen=True)
class Binding:
    role: str
    members: tuple[str, ...]
    condition: Mapping[str, Any] | None = None  # kept verbatim; Cloud Run services have none


@dataclass(frozen=True)
class Policy:
    """An IAM policy as read: `etag` must go back unchanged with the next write."""

    bindings: tuple[Binding, ...] = ()
    etag: bytes = b""
    version: int = 1

    def members(self, role: str = names.INVOKER_ROLE) -> frozenset[str]:
        return frozenset(m for b in self.bindings if b.role == role and b.condition is None for m in b.members)


@dataclass(frozen=True)
class IamPlan:
    """The policy to write (None: nothing changes) and what tfms manages afterwards."""

    policy: Policy | None
    before: tuple[str, ...]  # roles/run.invoker members as read
    after: tuple[str, ...]  # ... as they will be
    managed: tuple[str, ...]  # members tfms granted and will remember (the annotation)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    foreign: tuple[str, ...] = field(default=())  # invoker members someone else granted, left alone

    @property
    def changed(self) -> bool:
        return self.policy is not None


def desired_members(access: AccessSpec, public_via_iam: bool) -> frozenset[str]:
    """The invokers the spec asks for; allUsers only for `public: true` and only when public
    access is not already given by `invoker_iam_disabled` (never implied)."""
    wanted = set(access.invokers)
    if access.public and public_via_iam:
        wanted.add(names.ALL_USERS)
    return frozenset(wanted)


def plan_invokers(current: Policy, desired: Iterable[str], managed: Iterable[str], authoritative: bool) -> IamPlan:
    """The next policy.

    Additive: remove the members tfms granted that are no longer desired, add the desired ones
    that are missing; tfms then manages the desired members it had to add (plus those it already
    managed), never a member that was there before it asked. Authoritative: the binding is
    exactly `desired`, and tfms manages all of it.
    """
    want, mine = frozenset(desired), frozenset(managed)
    have = current.members()
    if authoritative:
        after = want
        now_managed = want
    else:
        after = (have - (mine - want)) | want
        now_managed = (mine & want) | (want - have)
    foreign = tuple(sorted(after - now_managed))
    base = IamPlan(None, tuple(sorted(have)), tuple(sorted(after)), tuple(sorted(now_managed)), foreign=foreign)
    if after == have:
        return base
    return replace(base, policy=_with_invokers(current, after), added=tuple(sorted(after - have)),
                   removed=tuple(sorted(have - after)))


def _with_invokers(current: Policy, members: frozenset[str]) -> Policy:
    """The same policy (etag, version, every other role) with the invoker binding replaced."""
    bindings: list[Binding] = []
    placed = False
    for b in current.bindings:
        if b.role != names.INVOKER_ROLE or b.condition is not None:
            bindings.append(b)
        elif not placed:
            placed = True
            if members:
                bindings.append(Binding(b.role, tuple(sorted(members))))
    if not placed and members:
        bindings.append(Binding(names.INVOKER_ROLE, tuple(sorted(members))))
    return Policy(tuple(bindings), current.etag, current.version)


def managed_members(service: Mapping[str, Any] | None) -> frozenset[str]:
    """The members tfms granted, from the Cloud Run service's annotation (empty when absent or unreadable:
    an unreadable record makes tfms manage less, so it can never remove someone else's grant)."""
    raw = ((service or {}).get("annotations") or {}).get(names.INVOKERS_ANNOTATION)
    if not raw:
        return frozenset()
    try:
        value = json.loads(raw)
    except ValueError:
        return frozenset()
    return frozenset(m for m in value if isinstance(m, str)) if isinstance(value, list) else frozenset()


def managed_annotation(members: Iterable[str]) -> str:
    return json.dumps(sorted(set(members)), separators=(",", ":"))


def has_intent(access: AccessSpec, managed: frozenset[str]) -> bool:
    """Whether IAM needs reading at all: nothing asked for and nothing granted means no calls."""
    return bool(access.invokers or access.public or access.authoritative or managed)


def with_iam_state(rendered: RenderedService, live: Mapping[str, Any] | None, public: bool) -> RenderedService:
    """The desired service keeping what the IAM step owns on it, so a full replace of the service
    never forgets which members tfms granted, nor turns off the `invoker_iam_disabled` a public
    service needed where the organisation forbids allUsers."""
    if not live:
        return rendered
    body = copy.deepcopy(rendered.body)
    record = (live.get("annotations") or {}).get(names.INVOKERS_ANNOTATION)
    if record is not None:
        body["annotations"] = {**body.get("annotations", {}), names.INVOKERS_ANNOTATION: record}
    if public and live.get("invokerIamDisabled"):
        body["invokerIamDisabled"] = True
    return replace(rendered, body=body)
