"""cloud-run-v2.md, "RPCs (Services)": one test per documented RPC behaviour."""

from __future__ import annotations

import pytest
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from tests.emulator.emulator_testkit import (
    IMAGE,
    IMAGE2,
    PARENT,
    Api,
    finish,
    short,
    template,
)

INVOKER = "roles/run.invoker"


def test_create_service_returns_an_lro_of_service(cr: Api) -> None:
    """ "`CreateService(parent, service, service_id, validate_only)` returns an LRO whose response
    and metadata are both `Service`." """
    op = cr.create("svc")
    assert op.metadata is None or isinstance(op.metadata, run_v2.Service)
    assert op.operation.metadata.Is(run_v2.Service.pb().DESCRIPTOR)
    svc = finish(op)
    assert isinstance(svc, run_v2.Service) and svc.name == cr.name("svc")
    assert op.operation.response.Is(run_v2.Service.pb().DESCRIPTOR)
    assert isinstance(op.metadata, run_v2.Service) and op.metadata.name == svc.name


def test_get_service_and_missing_service(cr: Api) -> None:
    """ "`GetService(name)`" — and a name that does not exist is NOT_FOUND."""
    created = cr.create_ready("svc")
    assert cr.get("svc") == created
    with cr.raises("NOT_FOUND"):
        cr.get("nope")


def test_create_existing_service_conflicts(cr: Api) -> None:
    """A service ID is unique in its project+region (`services/{service_id}`): creating it again
    is ALREADY_EXISTS."""
    cr.create_ready("svc")
    with cr.raises("ALREADY_EXISTS"):
        cr.create("svc")


def test_list_services_pages(cr: Api) -> None:
    """ "`ListServices(parent, page_size, page_token, show_deleted)`": pages are stable, even when
    an item of an earlier page is deleted between calls."""
    ids = [f"svc-{i}" for i in range(5)]
    for sid in ids:
        cr.create_ready(sid)
    pager = cr.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=2))
    assert [[short(s.name) for s in page.services] for page in pager.pages] == [ids[0:2], ids[2:4], ids[4:5]]
    first = cr.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=2))
    token = next(iter(first.pages)).next_page_token
    finish(cr.services.delete_service(name=cr.name("svc-0")))
    rest = cr.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=2, page_token=token))
    assert [short(s.name) for s in rest] == ids[2:]
    assert list(cr.services.list_services(parent="projects/other/locations/us-central1")) == []
    with cr.raises("INVALID_ARGUMENT"):
        cr.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_token="garbage"))


def test_list_services_refuses_the_location_wildcard(cr: Api) -> None:
    """ListServicesRequest.parent (installed types, which win over the reference): "Location must
    be a valid Google Cloud region, and cannot be the "-" wildcard." """
    cr.create_ready("svc")
    with cr.raises("INVALID_ARGUMENT"):
        list(cr.services.list_services(parent="projects/example-project/locations/-"))


def test_update_service_with_update_mask_touches_only_masked_fields(cr: Api) -> None:
    """ "`UpdateService(service, update_mask, validate_only, allow_missing)`": with a mask, only the
    named fields change (a service-level change creates no revision, B-015)."""
    svc = cr.create_ready("svc", template(revision="svc-v1"))
    svc.scaling.min_instance_count = 2
    svc.labels["ignored"] = "yes"  # not in the mask
    svc.template.containers[0].image = IMAGE2  # not in the mask
    updated = cr.update_ready(svc, update_mask={"paths": ["scaling.min_instance_count"]})
    assert updated.scaling.min_instance_count == 2
    assert dict(updated.labels) == {} and updated.template.containers[0].image == IMAGE
    assert cr.revision_ids("svc") == ["svc-v1"]
    with cr.raises("INVALID_ARGUMENT"):
        cr.update(svc, update_mask={"paths": ["nonsense"]})


def test_update_missing_service_is_not_found(cr: Api) -> None:
    """Without `allow_missing`, an update of a service that does not exist is NOT_FOUND."""
    with cr.raises("NOT_FOUND"):
        cr.update(run_v2.Service(name=cr.name("nope"), template=template()))


def test_allow_missing_turns_update_into_upsert(cr: Api) -> None:
    """ "`allow_missing=true` turns it into an upsert"."""
    created = cr.update_ready(run_v2.Service(name=cr.name("upsert"), template=template()), allow_missing=True)
    assert created.generation == 1 and created.latest_ready_revision
    created.template.containers[0].image = IMAGE2
    assert cr.update_ready(created, allow_missing=True).generation == 2


def test_delete_service_deletes_all_revisions(cr: Api) -> None:
    """ "`DeleteService(name, validate_only, etag)` returns an LRO. It stops serving and **deletes
    all revisions**." """
    svc = cr.create_ready("svc")
    svc.template.containers[0].image = IMAGE2
    svc = cr.update_ready(svc)
    revisions = [f"{svc.name}/revisions/{r}" for r in cr.revision_ids("svc")]
    assert len(revisions) == 2
    deleted = finish(cr.services.delete_service(name=svc.name))
    assert deleted.name == svc.name and deleted.delete_time
    with cr.raises("NOT_FOUND"):
        cr.get("svc")
    for revision in revisions:
        with cr.raises("NOT_FOUND"):
            cr.revisions.get_revision(name=revision)
    with cr.raises("NOT_FOUND"):
        cr.revision_ids("svc")


def test_set_iam_policy_replaces_the_whole_policy(cr: Api) -> None:
    """ "`GetIamPolicy` / `SetIamPolicy` (replaces the whole policy) / `TestIamPermissions` on
    `projects/*/locations/*/services/*`"."""
    svc = cr.create_ready("svc")
    first = policy_pb2.Policy(bindings=[policy_pb2.Binding(role=INVOKER, members=["user:a@example.com"])])
    cr.services.set_iam_policy(request={"resource": svc.name, "policy": first})
    second = policy_pb2.Policy(bindings=[policy_pb2.Binding(role=INVOKER, members=["user:b@example.com"])])
    stored = cr.services.set_iam_policy(request={"resource": svc.name, "policy": second})
    assert [list(b.members) for b in stored.bindings] == [["user:b@example.com"]]
    assert cr.services.get_iam_policy(request={"resource": svc.name}) == stored
    empty = cr.services.set_iam_policy(request={"resource": svc.name, "policy": policy_pb2.Policy()})
    assert list(empty.bindings) == []


def test_test_iam_permissions(cr: Api) -> None:
    """ "`TestIamPermissions` on `projects/*/locations/*/services/*`": answers the Cloud Run
    permissions the caller holds (locally: all of them), NOT_FOUND for a missing service."""
    svc = cr.create_ready("svc")
    response = cr.services.test_iam_permissions(
        request=iam_policy_pb2.TestIamPermissionsRequest(
            resource=svc.name, permissions=["run.routes.invoke", "run.services.get", "storage.objects.get"]
        )
    )
    assert list(response.permissions) == ["run.routes.invoke", "run.services.get"]
    with cr.raises("NOT_FOUND"):
        cr.services.test_iam_permissions(request={"resource": cr.name("nope"), "permissions": ["run.routes.invoke"]})
    with cr.raises("NOT_FOUND"):
        cr.services.get_iam_policy(request={"resource": cr.name("nope")})


def test_get_and_list_revisions(cr: Api) -> None:
    """ "Revisions: `GetRevision`, `ListRevisions`" — pages, and "-" for every service."""
    svc = cr.create_ready("svc")
    for image in ("a:1", "a:2", "a:3"):
        svc.template.containers[0].image = image
        svc = cr.update_ready(svc)
    other = cr.create_ready("other")
    pager = cr.revisions.list_revisions(request=run_v2.ListRevisionsRequest(parent=svc.name, page_size=3))
    pages = [[short(r.name) for r in p.revisions] for p in pager.pages]
    assert [len(p) for p in pages] == [3, 1]
    rev = cr.revisions.get_revision(name=svc.latest_created_revision)
    assert rev.service == svc.name and rev.containers[0].image == "a:3"
    everything = [short(r.name) for r in cr.revisions.list_revisions(parent=f"{PARENT}/services/-")]
    assert len(everything) == 5 and everything[-1] == short(other.latest_created_revision)


def test_only_retired_revisions_can_be_deleted(cr: Api) -> None:
    """ "`DeleteRevision(name, validate_only, etag)`. **Only retired revisions can be deleted.**" """
    svc = cr.create_ready("svc")
    first = svc.latest_created_revision
    with cr.raises("FAILED_PRECONDITION") as err:
        cr.revisions.delete_revision(name=first)
    assert "cannot be directly deleted because it is actively serving" in err.value.message
    svc.template.containers[0].image = IMAGE2
    cr.update_ready(svc)
    deleted = finish(cr.revisions.delete_revision(name=first))
    assert deleted.name == first and deleted.delete_time
    assert cr.revision_ids("svc") == [short(cr.get("svc").latest_created_revision)]
    with cr.raises("NOT_FOUND"):
        cr.revisions.delete_revision(name=first)


@pytest.mark.parametrize("kind", ["create", "update", "delete_service", "delete_revision"])
def test_validate_only_is_a_real_dry_run(cr: Api, kind: str) -> None:
    """ "`validate_only` is a real server-side dry run, so a "plan" step is possible": it validates
    (errors come back) but changes nothing."""
    svc = cr.create_ready("svc")
    old = svc.latest_created_revision
    svc.template.containers[0].image = IMAGE2
    svc = cr.update_ready(svc)
    before = _observe(cr)
    if kind == "create":
        request = run_v2.CreateServiceRequest(
            parent=PARENT, service_id="new", service=run_v2.Service(template=template()), validate_only=True
        )
        assert finish(cr.services.create_service(request=request)).name == cr.name("new")
        request.service_id = "New"
        with cr.raises("INVALID_ARGUMENT"):
            cr.services.create_service(request=request)
    elif kind == "update":
        svc.template.containers[0].image = "a:9"
        preview = finish(cr.update(svc, validate_only=True))
        assert preview.template.containers[0].image == "a:9"
        svc.traffic = [run_v2.TrafficTarget(type_=1, percent=50)]
        with cr.raises("INVALID_ARGUMENT"):
            cr.update(svc, validate_only=True)
    elif kind == "delete_service":
        request = run_v2.DeleteServiceRequest(name=svc.name, validate_only=True)
        assert finish(cr.services.delete_service(request=request)).name == svc.name
    else:
        request = run_v2.DeleteRevisionRequest(name=old, validate_only=True)
        assert finish(cr.revisions.delete_revision(request=request)).name == old
        with cr.raises("FAILED_PRECONDITION"):
            cr.revisions.delete_revision(
                request=run_v2.DeleteRevisionRequest(name=svc.latest_created_revision, validate_only=True)
            )
    assert _observe(cr) == before


def _observe(cr: Api) -> tuple[list[run_v2.Service], list[str]]:
    """Everything a client can see of the emulator's services and revisions."""
    services = list(cr.services.list_services(parent=PARENT))
    return services, [r.name for r in cr.revisions.list_revisions(parent=f"{PARENT}/services/-")]
