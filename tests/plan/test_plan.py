"""Table-driven: which action a live service calls for, and why."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import base_object
from tfms.api.validation import parse
from tfms.plan.service import Action, plan_service
from tfms.render.cloudrun import RenderedService, render_service


def _desired(**spec: object) -> RenderedService:
    return render_service(parse(base_object(**spec)))


def _live_from(rendered: RenderedService) -> dict[str, Any]:
    """What Cloud Run gives back: our body plus server fields and defaults."""
    live = copy.deepcopy(rendered.body)
    live.update({"name": rendered.name, "etag": "e1", "generation": "1", "uid": "u",
                 "uri": "https://x.a.run.app"})
    live["labels"]["added-by-someone"] = "x"
    live["template"]["containers"][0]["resources"]["startupCpuBoost"] = True  # a server default
    live["traffic"] = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    return live


PINNED_OLD = {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "fraud-scorer-old", "percent": 100}
Mut = Callable[[dict[str, Any]], None]
CASES: list[tuple[str, Mut, Action, str]] = [
    ("converged", lambda live: None, Action.NONE, ""),
    # B-009: a console edit renamed the revision; we resend our template, never echo theirs.
    ("foreign revision name", lambda live: live["template"].update(revision="fraud-scorer-00032-zun"),
     Action.UPDATE, "template: revision fraud-scorer-00032-zun"),
    # B-008: a revision holding our name with other content is resent (Cloud Run then says 409).
    ("same name, other content", lambda live: live["template"]["containers"][0].update(image="evil:1"),
     Action.UPDATE, "template.containers[0].image differ"),
    ("zero values omitted by proto3 JSON", lambda live: live["template"]["scaling"].pop("minInstanceCount"),
     Action.NONE, ""),
    ("template without name", lambda live: live["template"].pop("revision"), Action.UPDATE, "(server-named)"),
    ("traffic pinned elsewhere", lambda live: live.update(traffic=[PINNED_OLD]),
     Action.UPDATE, "traffic"),
    ("ingress changed", lambda live: live.update(ingress="INGRESS_TRAFFIC_INTERNAL_ONLY"), Action.UPDATE, "ingress"),
    ("our label removed", lambda live: live["labels"].pop("tfms-namespace"), Action.NOT_OWNED,
     "owned by TFModelService ?/fraud-scorer"),
    ("not created by tfms", lambda live: live.update(labels={}), Action.NOT_OWNED, "not created by tfms"),
    ("owned by another object", lambda live: live["labels"].update({"tfms-namespace": "other"}),
     Action.NOT_OWNED, "owned by TFModelService other/fraud-scorer"),
]


@pytest.mark.parametrize(("mutate", "action", "why"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan(mutate: Mut, action: Action, why: str) -> None:
    desired = _desired()
    live = _live_from(desired)
    mutate(live)
    plan = plan_service(desired, live)
    assert plan.action is action
    assert why in "; ".join(plan.changes)


def test_missing_service_is_created() -> None:
    assert plan_service(_desired(), None).action is Action.CREATE


def test_spec_change_is_an_update_with_new_revision() -> None:
    old = _desired()
    new = _desired(runtime={"image": "tensorflow/serving:2.19.0", "env": [{"name": "A", "value": "1"}]})
    plan = plan_service(new, _live_from(old))
    assert plan.action is Action.UPDATE
    assert plan.changes[0] == f"template: revision {old.revision} -> {new.revision}"
    assert [c.path for c in plan.diff] == ["template.revision", "template.containers[0].env"]
    # A changed field is compared with what runs now, so the message names the live revision.
    assert plan.changes[1] == f"template.containers[0].env differs from the live revision {old.revision}"


def test_traffic_proto_defaults_compare_equal() -> None:
    """proto3 JSON omits zero percents and empty tags; that is no difference."""
    desired = _desired(traffic=[{"percent": 100, "tag": "a"},
                                {"revision": "fraud-scorer-x", "percent": 0, "tag": "old"}])
    live = _live_from(desired)
    live["traffic"] = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "a"},
                       {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "fraud-scorer-x", "tag": "old"}]
    assert plan_service(desired, live).action is Action.NONE
