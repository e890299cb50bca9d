"""cloud-run-v2.md, `etag` on services and the "IAM" section."""

from __future__ import annotations

import pytest
from google.cloud import run_v2
from google.iam.v1 import policy_pb2
from google.type import expr_pb2

from tests.emulator.emulator_testkit import IMAGE2, Api, finish, short, violated_fields
from tfms.emulator import EmulatorConfig

from .conftest import Factory

INVOKER = "roles/run.invoker"
CONFLICT = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."


def _with_member(policy: policy_pb2.Policy, member: str) -> policy_pb2.Policy:
    updated = policy_pb2.Policy()
    updated.CopyFrom(policy)
    for binding in updated.bindings:
        if binding.role == INVOKER:
            binding.members.append(member)
            break
    else:
        updated.bindings.add(role=INVOKER, members=[member])
    return updated


def test_stale_service_etag_is_refused(cr: Api) -> None:
    """ "and `etag` (optional; detects modification conflicts)": an update or delete carrying a
    stale etag is refused (ABORTED) and changes nothing; the current etag works."""
    svc = cr.create_ready("svc")
    stale = run_v2.Service(svc)
    svc.labels["a"] = "b"
    updated = cr.update_ready(svc)
    assert updated.etag != stale.etag
    stale.labels["c"] = "d"
    with cr.raises("ABORTED"):
        cr.update(stale)
    assert dict(cr.get("svc").labels) == {"a": "b"}
    with cr.raises("ABORTED"):
        cr.services.delete_service(request=run_v2.DeleteServiceRequest(name=svc.name, etag=stale.etag))
    current = cr.get("svc")
    finish(cr.services.delete_service(request=run_v2.DeleteServiceRequest(name=svc.name, etag=current.etag)))


def test_stale_revision_etag_is_refused(cr: Api) -> None:
    """ "`DeleteRevision(name, validate_only, etag)`": a stale revision etag is refused."""
    svc = cr.create_ready("svc")
    old = cr.revisions.get_revision(name=svc.latest_created_revision)
    svc.template.containers[0].image = IMAGE2
    cr.update_ready(svc)  # retires `old`, which changes it
    with cr.raises("ABORTED"):
        cr.revisions.delete_revision(request=run_v2.DeleteRevisionRequest(name=old.name, etag='"stale"'))
    current = cr.revisions.get_revision(name=old.name)
    request = run_v2.DeleteRevisionRequest(name=old.name, etag=current.etag)
    assert short(finish(cr.revisions.delete_revision(request=request)).name) == short(old.name)


def test_iam_read_modify_write_conflict(cr: Api) -> None:
    """ "`get_iam_policy` → change → `set_iam_policy(policy with etag)`. A conflict returns **409 ABORTED
    "There were concurrent policy changes… retry the whole read-modify-write"**, so a retry has to
    fetch the policy again." """
    svc = cr.create_ready("svc")
    a = cr.services.get_iam_policy(request={"resource": svc.name})
    b = cr.services.get_iam_policy(request={"resource": svc.name})
    assert a.etag == b.etag and a.version == 1 and list(a.bindings) == []
    written = cr.services.set_iam_policy(
        request={"resource": svc.name, "policy": _with_member(b, "serviceAccount:ci@p.iam.gserviceaccount.com")}
    )
    assert written.etag != b.etag
    with cr.raises("ABORTED") as err:
        cr.services.set_iam_policy(request={"resource": svc.name, "policy": _with_member(a, "allUsers")})
    assert CONFLICT in err.value.message
    fresh = cr.services.get_iam_policy(request={"resource": svc.name})
    final = cr.services.set_iam_policy(request={"resource": svc.name, "policy": _with_member(fresh, "allUsers")})
    assert sorted(final.bindings[0].members) == ["allUsers", "serviceAccount:ci@p.iam.gserviceaccount.com"]


def test_iam_conditions_are_not_supported(cr: Api) -> None:
    """ "IAM Conditions are **not supported** on Cloud Run services (per the KCC resource table)."""
    svc = cr.create_ready("svc")
    binding = policy_pb2.Binding(role=INVOKER, members=["allUsers"], condition=expr_pb2.Expr(expression="true"))
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.services.set_iam_policy(request={"resource": svc.name, "policy": policy_pb2.Policy(bindings=[binding])})
    assert violated_fields(err.value) == {"policy.bindings[0].condition"}


@pytest.mark.parametrize("disabled", [True, False])
def test_invoker_iam_disabled_is_a_service_field(cr: Api, disabled: bool) -> None:
    """ "The supported way to make a service public without `allUsers` is `invoker_iam_disabled=true`":
    it is a service-level field (no new revision) that reads back as written."""
    svc = cr.create_ready("svc")
    svc.invoker_iam_disabled = disabled
    updated = cr.update_ready(svc)
    assert updated.invoker_iam_disabled is disabled
    assert updated.latest_created_revision == svc.latest_created_revision


def test_deleting_a_service_drops_its_policy(cr: Api) -> None:
    """The policy belongs to the service: a new service of the same name starts with an empty one."""
    svc = cr.create_ready("svc")
    cr.services.set_iam_policy(request={"resource": svc.name, "policy": _with_member(policy_pb2.Policy(), "allUsers")})
    finish(cr.services.delete_service(name=svc.name))
    cr.create_ready("svc")
    assert list(cr.services.get_iam_policy(request={"resource": svc.name}).bindings) == []


def test_domain_restricted_sharing_blocks_public_members(make_cr: Factory) -> None:
    """"`allUsers` may be blocked by the org policy `iam.allowedPolicyMemberDomains` (Domain Restricted
    Sharing). The supported way to make a service public without `allUsers` is
    `invoker_iam_disabled=true`" (the org policy is an emulator setting here)."""
    with make_cr(EmulatorConfig(public_members_blocked=True)) as cr:
        svc = cr.create_ready("svc")
        for member in ("allUsers", "allAuthenticatedUsers"):
            policy = _with_member(cr.services.get_iam_policy(request={"resource": svc.name}), member)
            with cr.raises("FAILED_PRECONDITION") as err:
                cr.services.set_iam_policy(request={"resource": svc.name, "policy": policy})
            assert "do not belong to a permitted customer" in err.value.message
        svc.invoker_iam_disabled = True
        assert cr.update_ready(svc).invoker_iam_disabled
