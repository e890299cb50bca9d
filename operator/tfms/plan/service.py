"""What to do with one Cloud Run service: create, update (and why), nothing, or refuse."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tfms.api import names
from tfms.plan.diff import Change, owned_changes
from tfms.plan.rollout import ANNOTATION as ROLLOUT_ANNOTATION
from tfms.render.cloudrun import RenderedService


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    NONE = "none"
    NOT_OWNED = "not-owned"


@dataclass(frozen=True)
class Plan:
    action: Action
    changes: list[str] = field(default_factory=list)  # for people
    diff: list[Change] = field(default_factory=list)  # for machines


def _owner(labels: Mapping[str, str]) -> tuple[str, str] | None:
    if labels.get(names.LABEL_MANAGED_BY) != names.MANAGED_BY_VALUE:
        return None
    return labels.get(names.LABEL_NAMESPACE, ""), labels.get(names.LABEL_NAME, "")


def owned_by(live_labels: Mapping[str, str], want_labels: Mapping[str, str]) -> bool:
    """Same owner: namespace and name, and the object UID when both sides record one (so an
    object recreated under the same name does not take over what an abandoned one left)."""
    if _owner(live_labels) is None or _owner(live_labels) != _owner(want_labels):
        return False
    live_uid, want_uid = live_labels.get(names.LABEL_UID), want_labels.get(names.LABEL_UID)
    return not (live_uid and want_uid and live_uid != want_uid)


def plan_service(desired: RenderedService, live: Mapping[str, Any] | None) -> Plan:
    """Compare only the fields tfms owns.

    The template's revision name is a content hash, so a different name means different
    content; the content is compared too, which catches a revision that took our name with
    other content. Either way the whole template is resent from the spec, never
    read-modified-written.
    """
    if live is None:
        return Plan(Action.CREATE, ["service does not exist"])
    want_labels: Mapping[str, str] = desired.body.get("labels", {})
    live_labels: Mapping[str, str] = live.get("labels", {}) or {}
    if not owned_by(live_labels, want_labels):
        owner = _owner(live_labels)
        who = ("not created by tfms" if owner is None
               else f"owned by TFModelService {owner[0] or '?'}/{owner[1] or '?'}"
               + (f" (uid {live_labels[names.LABEL_UID]})" if live_labels.get(names.LABEL_UID) else ""))
        return Plan(Action.NOT_OWNED, [f"Cloud Run service {desired.name} exists and is {who}"])

    changes = owned_changes(desired, live)
    live_revision = str((live.get("template") or {}).get("revision") or "")
    described = [_describe(c, live_revision) for c in changes]
    return Plan(Action.UPDATE if changes else Action.NONE, described, changes)


def _describe(change: Change, live_revision: str) -> str:
    if change.path == "template.revision":
        return f"template: revision {change.live or '(server-named)'} -> {change.desired}"
    if change.path.startswith("template."):
        return f"{change.path} differs from the live revision {live_revision or '(server-named)'}"
    if change.path == "traffic":
        return "traffic: split differs"
    if change.path == f"annotations.{ROLLOUT_ANNOTATION}":
        return "rollout state"
    return str(change)
