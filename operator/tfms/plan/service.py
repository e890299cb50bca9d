"""What to do with one Cloud Run service: create, update (and why), nothing, or refuse."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tfms.api import names
from tfms.plan.traffic import normalize
from tfms.render.cloudrun import RenderedService


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    NONE = "none"
    NOT_OWNED = "not-owned"


@dataclass(frozen=True)
class Plan:
    action: Action
    changes: list[str] = field(default_factory=list)


def _owner(labels: Mapping[str, str]) -> tuple[str, str] | None:
    if labels.get(names.LABEL_MANAGED_BY) != names.MANAGED_BY_VALUE:
        return None
    return labels.get(names.LABEL_NAMESPACE, ""), labels.get(names.LABEL_NAME, "")


def _differences(want: Any, have: Any, path: str) -> list[str]:
    """Where `have` disagrees with `want`, looking only at what `want` sets.

    Fields Cloud Run fills in by itself (defaults, system annotations) are absent from
    `want` and so never count as drift.
    """
    if have is None and want in (0, False, "", [], {}):
        return []  # proto3 JSON omits zero values
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return [path]
        return [d for k, v in want.items() for d in _differences(v, have.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [path]
        return [d for i, (w, h) in enumerate(zip(want, have, strict=True)) for d in _differences(w, h, f"{path}[{i}]")]
    return [] if want == have else [path]


def plan_service(desired: RenderedService, live: Mapping[str, Any] | None) -> Plan:
    """Compare only the fields tfms owns.

    The template's revision name is a content hash, so a different name means different
    content; the content is compared too (desired fields only), which catches a revision
    that took our name with other content. Either way the whole template is resent from
    the spec, never read-modified-written.
    """
    if live is None:
        return Plan(Action.CREATE, ["service does not exist"])
    want_labels: Mapping[str, str] = desired.body.get("labels", {})
    live_labels: Mapping[str, str] = live.get("labels", {}) or {}
    if _owner(live_labels) != _owner(want_labels):
        owner = _owner(live_labels)
        who = ("not created by tfms" if owner is None
               else f"owned by TFModelService {owner[0] or '?'}/{owner[1] or '?'}")
        return Plan(Action.NOT_OWNED, [f"Cloud Run service {desired.name} exists and is {who}"])

    changes: list[str] = []
    live_template = live.get("template") or {}
    live_revision = str(live_template.get("revision", ""))
    if live_revision != desired.revision:
        changes.append(f"template: revision {live_revision or '(server-named)'} -> {desired.revision}")
    else:
        drift = _differences(desired.body["template"], live_template, "template")
        if drift:
            changes.append(f"template: {', '.join(drift)} differ from revision {desired.revision}")
    for key, value in want_labels.items():
        if live_labels.get(key) != value:
            changes.append(f"labels.{key}: {live_labels.get(key)!r} -> {value!r}")
    want_ingress = desired.body.get("ingress", "INGRESS_TRAFFIC_ALL")
    if live.get("ingress", "INGRESS_TRAFFIC_ALL") != want_ingress:
        changes.append(f"ingress: {live.get('ingress')} -> {want_ingress}")
    if normalize(live.get("traffic", []) or []) != normalize(desired.body.get("traffic", [])):
        changes.append("traffic: split differs")
    return Plan(Action.UPDATE if changes else Action.NONE, changes)
