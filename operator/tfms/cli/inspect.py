"""`tfms diff` and `tfms plan`: what apply would change, without changing it."""

from __future__ import annotations

import asyncio
import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from tfms.api.model import TFModelService
from tfms.backends.cloudrun import CloudRun, connected
from tfms.backends.errors import BackendError
from tfms.plan.service import Action, Plan, plan_service
from tfms.reconcile.service import desired_service
from tfms.render.cloudrun import render_service

VALUE_WIDTH = 160


@dataclass
class Inspection:
    svc: TFModelService
    plan: Plan | None = None
    error: str = ""
    server_check: str = ""  # plan only: "ok" or Cloud Run's refusal
    live_revision: str = ""
    desired_revision: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return "error" if self.error else self.plan.action.value if self.plan else "unknown"

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.svc.name, "project": self.svc.project, "region": self.svc.region,
            "action": self.action, "error": self.error or None,
            "desiredRevision": self.desired_revision, "liveRevision": self.live_revision or None,
            "changes": [{"path": c.path, "live": c.live, "desired": c.desired}
                        for c in (self.plan.diff if self.plan else [])],
            **({"serverValidation": self.server_check} if self.server_check else {}),
        }


async def _inspect(api: CloudRun, svc: TFModelService, server_check: bool) -> Inspection:
    rendered = render_service(svc)
    result = Inspection(svc, desired_revision=rendered.revision)
    try:
        live = await api.get_service(rendered.name)
        result.live_revision = str(((live or {}).get("template") or {}).get("revision", ""))
        rendered, _ = await desired_service(svc, rendered, live)
        result.plan = plan_service(rendered, live)
        if not server_check or result.plan.action in (Action.NONE, Action.NOT_OWNED):
            return result
        if live is None:
            await api.validate_create(rendered.parent, rendered.service_id, rendered.body)
        else:
            await api.validate_update(rendered.name, rendered.body, str(live.get("etag", "")))
        result.server_check = "ok"
    except BackendError as exc:
        if result.plan is not None and server_check:
            result.server_check = str(exc)
        else:
            result.error = str(exc)
    return result


async def inspect_all(services: list[TFModelService], endpoint: str | None, *, server_check: bool
                      ) -> list[Inspection]:
    async with connected(endpoint) as api:
        return list(await asyncio.gather(*(_inspect(api, s, server_check) for s in services)))


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _value_diff(live: Any, desired: Any) -> list[str]:
    """Multi-line strings (generated config files) as a line diff, anything else as -/+ values."""
    if isinstance(live, str) and isinstance(desired, str) and ("\n" in live or "\n" in desired):
        body = difflib.unified_diff(live.splitlines(), desired.splitlines(), lineterm="", n=1)
        return [f"      {line}" for line in list(body)[2:]]
    return [f"      - {_short(live)}", f"      + {_short(desired)}"]


def render_text(results: list[Inspection]) -> str:
    lines: list[str] = []
    for r in results:
        lines.append(f"{r.svc.name} ({r.svc.project}/{r.svc.region}): {r.action}")
        if r.error:
            lines.append(f"  error: {r.error}")
        if r.plan is not None and r.plan.action is Action.NOT_OWNED:
            lines.extend(f"  {c}" for c in r.plan.changes)
        if r.plan is not None and r.plan.action is Action.CREATE:
            lines.append(f"  + revision {r.desired_revision}")
        for change in r.plan.diff if r.plan else []:
            lines.append(f"  ~ {change.path}")
            lines.extend(_value_diff(change.live, change.desired))
        if r.server_check:
            lines.append(f"  Cloud Run validate_only: {r.server_check}")
    return "\n".join(lines)
