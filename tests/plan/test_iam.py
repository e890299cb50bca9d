"""The invoker planner: which policy tfms writes, table-driven with real member forms."""

from __future__ import annotations

import pytest

from tests.conftest import base_object
from tfms.api.model import AccessSpec
from tfms.api.validation import parse
from tfms.plan.iam import (
    Binding,
    Policy,
    desired_members,
    managed_annotation,
    managed_members,
    plan_invokers,
    with_iam_state,
)
from tfms.render.cloudrun import render_service

INVOKER = "roles/run.invoker"
ADMIN = "roles/run.admin"
APP = "serviceAccount:app@example-project.iam.gserviceaccount.com"
PUSH = "serviceAccount:pubsub-push@example-project.iam.gserviceaccount.com"  # B-018's foreign member
CI = "serviceAccount:ci@example-project.iam.gserviceaccount.com"
ANA = "user:ana@example.com"
TEAM = "group:ml-team@example.com"
OPS = "user:ops@example.com"
ETAG = b"\x01\x02etag"


def _policy(*invokers: str, admin: tuple[str, ...] = (OPS,)) -> Policy:
    bindings = [Binding(ADMIN, admin)] if admin else []
    if invokers:
        bindings.append(Binding(INVOKER, tuple(sorted(invokers))))
    return Policy(tuple(bindings), ETAG, 1)


# (id, current invokers, desired, managed, authoritative,
#  expected invokers after, expected managed after, added, removed)
CASES = [
    ("add to empty", (), {APP}, set(), False, (APP,), (APP,), (APP,), ()),
    ("foreign member kept when adding (B-018)", (PUSH,), {APP}, set(), False, (APP, PUSH), (APP,), (APP,), ()),
    ("remove only what tfms granted", (APP, PUSH), set(), {APP}, False, (PUSH,), (), (), (APP,)),
    ("converged: nothing written", (APP, PUSH), {APP}, {APP}, False, (APP, PUSH), (APP,), (), ()),
    ("pre-existing desired member is not claimed", (ANA,), {ANA}, set(), False, (ANA,), (), (), ()),
    ("member removed out of band is granted again", (PUSH,), {APP}, {APP}, False, (APP, PUSH), (APP,),
     (APP,), ()),
    ("swap one managed member for another", (APP, PUSH), {TEAM}, {APP}, False, (TEAM, PUSH), (TEAM,),
     (TEAM,), (APP,)),
    ("public adds allUsers beside the others (I-018)", (CI,), {"allUsers"}, set(), False, ("allUsers", CI),
     ("allUsers",), ("allUsers",), ()),
    ("authoritative replaces the binding (I-017)", (PUSH, CI), {"allUsers"}, set(), True, ("allUsers",),
     ("allUsers",), ("allUsers",), (CI, PUSH)),
    ("authoritative converged", (APP,), {APP}, set(), True, (APP,), (APP,), (), ()),
    ("authoritative with nothing desired empties the binding", (PUSH,), set(), set(), True, (), (), (),
     (PUSH,)),
]


@pytest.mark.parametrize(("current", "desired", "managed", "authoritative", "after", "now_managed", "added",
                          "removed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_invokers(current: tuple[str, ...], desired: set[str], managed: set[str], authoritative: bool,
                       after: tuple[str, ...], now_managed: tuple[str, ...], added: tuple[str, ...],
                       removed: tuple[str, ...]) -> None:
    policy = _policy(*current)
    plan = plan_invokers(policy, desired, managed, authoritative)
    assert plan.after == after
    assert plan.managed == now_managed
    assert (plan.added, plan.removed) == (added, removed)
    assert plan.changed == bool(added or removed)
    if plan.policy is None:
        return
    # Same etag back (B-017), other roles untouched, the invoker binding exactly `after`.
    assert plan.policy.etag == ETAG and plan.policy.version == 1
    assert [b for b in plan.policy.bindings if b.role == ADMIN] == [Binding(ADMIN, (OPS,))]
    assert plan.policy.members() == frozenset(after)
    invoker_bindings = [b for b in plan.policy.bindings if b.role == INVOKER]
    assert invoker_bindings == ([Binding(INVOKER, after)] if after else [])


def test_other_roles_and_conditional_bindings_are_never_touched() -> None:
    conditional = Binding(INVOKER, (TEAM,), {"expression": "request.time < timestamp('2030-01-01T00:00:00Z')"})
    policy = Policy((Binding(ADMIN, (OPS,)), conditional, Binding(INVOKER, (PUSH,))), ETAG, 3)
    plan = plan_invokers(policy, {APP}, set(), authoritative=True)
    assert plan.policy is not None
    assert plan.policy.bindings == (Binding(ADMIN, (OPS,)), conditional, Binding(INVOKER, (APP,)))
    assert plan.policy.version == 3


@pytest.mark.parametrize(("access", "via_iam", "expected"), [
    (AccessSpec(invokers=(APP,)), True, {APP}),
    (AccessSpec(invokers=(APP,), public=True), True, {APP, "allUsers"}),
    (AccessSpec(invokers=(APP,), public=True), False, {APP}),  # public through invoker_iam_disabled
    (AccessSpec(), True, set()),  # never implied
])
def test_desired_members(access: AccessSpec, via_iam: bool, expected: set[str]) -> None:
    assert desired_members(access, via_iam) == frozenset(expected)


@pytest.mark.parametrize(("annotations", "expected"), [
    ({"tfms.dev/invokers": managed_annotation([PUSH, APP, APP])}, {APP, PUSH}),
    ({"tfms.dev/invokers": "not json"}, set()),
    ({"tfms.dev/invokers": '{"a": 1}'}, set()),
    ({}, set()),
])
def test_managed_members_record(annotations: dict[str, str], expected: set[str]) -> None:
    assert managed_members({"annotations": annotations}) == frozenset(expected)


@pytest.mark.parametrize(("public", "live", "annotations", "disabled"), [
    (False, None, None, False),
    (True, {"invokerIamDisabled": True, "annotations": {"tfms.dev/invokers": "[]"}}, {"tfms.dev/invokers": "[]"},
     True),
    (False, {"invokerIamDisabled": True}, None, False),  # not public: drift back to IAM on, never implied
    (True, {"invokerIamDisabled": False, "annotations": {"other": "x"}}, None, False),
])
def test_full_replace_keeps_what_the_iam_step_owns(public: bool, live: dict[str, object] | None,
                                                   annotations: dict[str, str] | None, disabled: bool) -> None:
    rendered = render_service(parse(base_object(access={"public": public})))
    assert rendered.body["invokerIamDisabled"] is False
    kept = with_iam_state(rendered, live, public)
    assert kept.body["invokerIamDisabled"] is disabled
    assert kept.body.get("annotations") == annotations
    assert kept.revision == rendered.revision and kept.body["template"] == rendered.body["template"]
