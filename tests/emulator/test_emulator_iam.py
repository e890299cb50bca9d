"""Per-service IAM through the real client: read-modify-write with etags (B-017)."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.iam.v1 import policy_pb2
from google.type import expr_pb2

from tests.emulator.emulator_testkit import Api, violated_fields

INVOKER = "roles/run.invoker"
CONFLICT = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."


def _add(policy: policy_pb2.Policy, member: str) -> policy_pb2.Policy:
    updated = policy_pb2.Policy()
    updated.CopyFrom(policy)
    for binding in updated.bindings:
        if binding.role == INVOKER:
            binding.members.append(member)
            break
    else:
        updated.bindings.add(role=INVOKER, members=[member])
    return updated


def test_get_set_and_etag_rotation(api: Api) -> None:
    svc = api.create_ready("svc")
    empty = api.services.get_iam_policy(request={"resource": svc.name})
    assert empty.version == 1 and list(empty.bindings) == [] and empty.etag
    assert api.services.get_iam_policy(request={"resource": svc.name}).etag == empty.etag

    stored = api.services.set_iam_policy(
        request={
            "resource": svc.name,
            "policy": _add(empty, "serviceAccount:app@example-project.iam.gserviceaccount.com"),
        }
    )
    assert [(b.role, list(b.members)) for b in stored.bindings] == [
        (INVOKER, ["serviceAccount:app@example-project.iam.gserviceaccount.com"])
    ]
    assert stored.etag != empty.etag
    assert api.services.get_iam_policy(request={"resource": svc.name}) == stored
    # IAM changes are not service changes.
    assert api.get("svc").generation == 1
    assert api.emulator.state.policies[svc.name] == stored


@pytest.mark.parametrize(
    ("binding", "field"),
    [
        (
            policy_pb2.Binding(role=INVOKER, members=["allUsers"], condition=expr_pb2.Expr(expression="true")),
            "policy.bindings[0].condition",
        ),
        (policy_pb2.Binding(role=INVOKER, members=["someone@example.com"]), "policy.bindings[0].members[0]"),
        (policy_pb2.Binding(role=INVOKER, members=["user:not-an-email"]), "policy.bindings[0].members[0]"),
        (policy_pb2.Binding(role="run.invoker", members=["allUsers"]), "policy.bindings[0].role"),
    ],
)
def test_invalid_policies(api: Api, binding: policy_pb2.Binding, field: str) -> None:
    svc = api.create_ready("svc")
    with pytest.raises(exceptions.InvalidArgument) as err:
        api.services.set_iam_policy(request={"resource": svc.name, "policy": policy_pb2.Policy(bindings=[binding])})
    assert violated_fields(err.value) == {field}


def test_accepted_member_forms(api: Api) -> None:
    svc = api.create_ready("svc")
    members = [
        "user:a@example.com",
        "group:g@example.com",
        "serviceAccount:sa@p.iam.gserviceaccount.com",
        "domain:example.com",
        "allUsers",
        "allAuthenticatedUsers",
        "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s",
        "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*",
    ]
    policy = policy_pb2.Policy(bindings=[policy_pb2.Binding(role=INVOKER, members=members)])
    stored = api.services.set_iam_policy(request={"resource": svc.name, "policy": policy})
    assert sorted(stored.bindings[0].members) == sorted(members)
