"""Services and revisions through the real sync client: creation, generations, naming, validation."""

from __future__ import annotations

import re

import pytest
from google.api_core import exceptions
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from tests.emulator.emulator_testkit import (
    IMAGE,
    IMAGE2,
    LATEST,
    PARENT,
    SUCCEEDED,
    Api,
    clients,
    finish,
    short,
    template,
    violated_fields,
)
from tfms.emulator import Emulator, EmulatorConfig


def test_create_returns_pending_operation_then_converged_service(api: Api) -> None:
    op = api.create("fraud-scorer")
    assert op.operation.done is False  # Create returns before the revision is ready
    assert re.fullmatch(rf"{PARENT}/operations/[0-9a-f-]{{36}}", op.operation.name)
    svc = finish(op)

    assert svc.name == api.name("fraud-scorer")
    assert svc.generation == 1 and svc.observed_generation == 1
    revision_re = rf"{api.name('fraud-scorer')}/revisions/fraud-scorer-00001-[a-z]{{3}}"
    assert re.fullmatch(revision_re, svc.latest_created_revision)
    assert svc.latest_ready_revision == svc.latest_created_revision
    assert svc.reconciling is False
    assert [(t.type_, t.revision, t.percent, t.tag) for t in svc.traffic_statuses] == [(LATEST, "", 100, "")]
    assert re.fullmatch(r"https://fraud-scorer-[a-z0-9]{10}-uc\.a\.run\.app", svc.uri)
    assert svc.urls[0] == svc.uri
    assert re.fullmatch(r"https://fraud-scorer-\d{12}\.us-central1\.run\.app", svc.urls[1])
    assert svc.terminal_condition.type_ == "Ready" and svc.terminal_condition.state == SUCCEEDED
    assert {c.type_: c.state for c in svc.conditions} == {"RoutesReady": SUCCEEDED, "ConfigurationsReady": SUCCEEDED}
    assert svc.uid and svc.etag and svc.creator == svc.last_modifier == "local-user@tfms.local"
    assert svc.create_time == svc.update_time
    # Documented server defaults are written into the stored template.
    assert svc.template.timeout.seconds == 300
    assert svc.template.scaling.max_instance_count == 100
    assert svc.template.max_instance_request_concurrency == 80
    assert [(p.name, p.container_port) for p in svc.template.containers[0].ports] == [("http1", 8080)]

    rev = api.revisions.get_revision(name=svc.latest_created_revision)
    assert rev.service == svc.name and rev.containers[0].image == IMAGE
    assert {c.type_: c.state for c in rev.conditions}["Ready"] == SUCCEEDED
    assert rev.reconciling is False and rev.observed_generation == rev.generation == 1


def test_url_is_stable_per_project_and_region(api: Api) -> None:
    a = api.create_ready("svc-a")
    b = api.create_ready("svc-b")
    assert a.uri.replace("svc-a", "X") == b.uri.replace("svc-b", "X")


def test_unchanged_update_creates_nothing(api: Api) -> None:
    svc = api.create_ready("svc")
    op = api.update(svc)
    assert op.operation.done is True  # nothing to reconcile
    again = finish(op)
    assert again.generation == 1 and again.etag == svc.etag
    # Re-sending the original, non-defaulted template is also "unchanged".
    again = api.update_ready(run_v2.Service(name=svc.name, template=template()))
    assert again.generation == 1
    assert api.revision_ids("svc") == [short(svc.latest_created_revision)]


def test_template_change_creates_next_revision(api: Api) -> None:
    svc = api.create_ready("svc")
    svc.template.containers[0].image = IMAGE2
    updated = api.update_ready(svc)
    assert updated.generation == 2 and updated.observed_generation == 2
    assert re.fullmatch(r".*/revisions/svc-00002-[a-z]{3}", updated.latest_created_revision)
    assert updated.latest_ready_revision == updated.latest_created_revision
    assert updated.etag != svc.etag
    assert api.revision_ids("svc") == [short(svc.latest_created_revision), short(updated.latest_created_revision)]


def test_service_level_changes_bump_generation_without_revision(api: Api) -> None:
    svc = api.create_ready("svc")
    svc.labels["team"] = "ml"
    svc.scaling.min_instance_count = 1
    svc.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY  # type: ignore[assignment]
    updated = api.update_ready(svc)
    assert updated.generation == 2 and updated.observed_generation == 2
    assert updated.latest_created_revision == svc.latest_created_revision
    assert len(api.revision_ids("svc")) == 1
    assert updated.labels == {"team": "ml"} and updated.scaling.min_instance_count == 1


def test_scaling_update_with_mask_and_echoed_revision_name_is_no_conflict(api: Api) -> None:
    """B-015: a field-masked service-level update must not touch the template at all."""
    svc = api.create_ready("svc", template(revision="svc-v1"))
    svc.scaling.min_instance_count = 2
    svc.template.containers[0].image = IMAGE2  # ignored: not in the mask
    updated = api.update_ready(svc, update_mask=field_mask_pb2.FieldMask(paths=["scaling.minInstanceCount"]))
    assert updated.scaling.min_instance_count == 2
    assert updated.template.containers[0].image == IMAGE
    assert api.revision_ids("svc") == ["svc-v1"]


def test_update_mask_rejects_unknown_fields(api: Api) -> None:
    svc = api.create_ready("svc")
    with pytest.raises(exceptions.InvalidArgument) as err:
        api.update(svc, update_mask=field_mask_pb2.FieldMask(paths=["nonsense"]))
    assert violated_fields(err.value) == {"update_mask.paths[0]"}


def test_byo_revision_name_reuse_with_different_template_conflicts(api: Api) -> None:
    """B-008: revisions are immutable; the name identifies one configuration."""
    svc = api.create_ready("svc", template(revision="svc-v1"))
    before = api.emulator.state
    svc.template.containers[0].image = IMAGE2
    with pytest.raises(exceptions.AlreadyExists) as err:
        api.update(svc)
    assert isinstance(err.value, exceptions.Conflict)
    assert err.value.message == "Revision named 'svc-v1' with different configuration already exists."
    after = api.emulator.state
    assert after.services == before.services and after.revisions == before.revisions


def test_byo_revision_same_name_same_template_is_no_new_revision(api: Api) -> None:
    svc = api.create_ready("svc", template(revision="svc-v1"))
    svc.template.containers[0].image = IMAGE2
    svc.template.revision = "svc-v2"
    v2 = api.update_ready(svc)
    assert short(v2.latest_ready_revision) == "svc-v2"
    # Going back to v1's exact template and name reuses the existing revision.
    v2.template.containers[0].image = IMAGE
    v2.template.revision = "svc-v1"
    back = api.update_ready(v2)
    assert short(back.latest_created_revision) == "svc-v1" == short(back.latest_ready_revision)
    assert back.generation == 3
    assert api.revision_ids("svc") == ["svc-v1", "svc-v2"]


@pytest.mark.parametrize(
    ("revision", "why"),
    [("green", "prefixed"), ("svc-Blue", "DNS-1035"), ("svc-" + "a" * 60, "at most 63"), ("svc-x-", "DNS-1035")],
)
def test_byo_revision_name_rules(api: Api, revision: str, why: str) -> None:
    with pytest.raises(exceptions.InvalidArgument) as err:
        api.create("svc", template(revision=revision))
    assert violated_fields(err.value) == {"service.template.revision"}
    assert why in err.value.message


@pytest.mark.parametrize("service_id", ["1abc", "abc-", "Abc", "a" * 50, "a_b", "-abc", ""])
def test_service_id_rules(api: Api, service_id: str) -> None:
    with pytest.raises(exceptions.InvalidArgument) as err:
        api.create(service_id)
    assert violated_fields(err.value) == {"service_id"}
    assert api.emulator.state.services == {}


def test_service_id_of_49_chars_is_accepted(api: Api) -> None:
    assert api.create_ready("a" * 49).name.endswith("/" + "a" * 49)


@pytest.mark.parametrize(
    ("service", "fields"),
    [
        (run_v2.Service(), {"service.template"}),
        (run_v2.Service(template=run_v2.RevisionTemplate()), {"service.template.containers"}),
        (
            run_v2.Service(template=run_v2.RevisionTemplate(containers=[run_v2.Container()])),
            {"service.template.containers[0].image"},
        ),
        (
            run_v2.Service(
                template=run_v2.RevisionTemplate(
                    containers=[
                        run_v2.Container(
                            image=IMAGE,
                            ports=[
                                run_v2.ContainerPort(container_port=8080),
                                run_v2.ContainerPort(container_port=8501),
                            ],
                        )
                    ]
                )
            ),
            {"service.template.containers[0].ports"},
        ),
        (
            run_v2.Service(
                template=run_v2.RevisionTemplate(
                    containers=[run_v2.Container(image=IMAGE, ports=[run_v2.ContainerPort(name="grpc")])]
                )
            ),
            {"service.template.containers[0].ports[0].name"},
        ),
        (
            run_v2.Service(template=template(), annotations={"run.googleapis.com/ingress": "all"}),
            {"service.annotations['run.googleapis.com/ingress']"},
        ),
        (
            run_v2.Service(template=template(), labels={"cloud.googleapis.com/location": "x"}),
            {"service.labels['cloud.googleapis.com/location']"},
        ),
        (
            run_v2.Service(template=template(annotations={"autoscaling.knative.dev/maxScale": "3"})),
            {"service.template.annotations['autoscaling.knative.dev/maxScale']"},
        ),
        (
            run_v2.Service(template=template(labels={"serving.knative.dev/service": "x"})),
            {"service.template.labels['serving.knative.dev/service']"},
        ),
        (
            run_v2.Service(template=template(max_instance_request_concurrency=1001)),
            {"service.template.max_instance_request_concurrency"},
        ),
        (run_v2.Service(template=template(), description="x" * 513), {"service.description"}),
    ],
)
def test_service_validation_names_the_field(api: Api, service: run_v2.Service, fields: set[str]) -> None:
    with pytest.raises(exceptions.InvalidArgument) as err:
        api.services.create_service(parent=PARENT, service_id="svc", service=service)
    assert violated_fields(err.value) == fields
    for field in fields:
        assert field in err.value.message


def test_gpu_minimums(api: Api) -> None:
    container = run_v2.Container(
        image="tensorflow/serving:2.19.0-gpu",
        resources=run_v2.ResourceRequirements(limits={"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}),
    )
    tpl = run_v2.RevisionTemplate(containers=[container], node_selector=run_v2.NodeSelector(accelerator="nvidia-l4"))
    with pytest.raises(exceptions.InvalidArgument) as err:
        api.create("gpu", tpl)
    assert violated_fields(err.value) == {
        "service.template.containers[0].resources.limits['cpu']",
        "service.template.containers[0].resources.limits['memory']",
    }
    container.resources.limits.update({"cpu": "4", "memory": "16Gi"})
    tpl = run_v2.RevisionTemplate(containers=[container], node_selector=run_v2.NodeSelector(accelerator="nvidia-l4"))
    assert api.create_ready("gpu", tpl).template.node_selector.accelerator == "nvidia-l4"


def test_create_existing_and_get_missing(api: Api) -> None:
    api.create_ready("svc")
    with pytest.raises(exceptions.AlreadyExists):
        api.create("svc")
    with pytest.raises(exceptions.NotFound):
        api.get("nope")
    with pytest.raises(exceptions.NotFound):
        api.update(run_v2.Service(name=api.name("nope"), template=template()))


def test_allow_missing_update_creates(api: Api) -> None:
    created = api.update_ready(run_v2.Service(name=api.name("upsert"), template=template()), allow_missing=True)
    assert created.generation == 1 and created.latest_ready_revision
    # And on an existing service it is a normal update.
    created.template.containers[0].image = IMAGE2
    assert api.update_ready(created, allow_missing=True).generation == 2


def test_stale_etag_is_aborted(api: Api) -> None:
    svc = api.create_ready("svc")
    stale = run_v2.Service(svc)
    svc.labels["a"] = "b"
    api.update_ready(svc)
    stale.labels["c"] = "d"
    with pytest.raises(exceptions.Aborted):
        api.update(stale)
    assert api.get("svc").labels == {"a": "b"}
    with pytest.raises(exceptions.Aborted):
        api.services.delete_service(request=run_v2.DeleteServiceRequest(name=svc.name, etag=stale.etag))
    current = api.get("svc")
    finish(api.services.delete_service(request=run_v2.DeleteServiceRequest(name=svc.name, etag=current.etag)))


def test_validate_only_changes_nothing(api: Api) -> None:
    preview = finish(
        api.services.create_service(
            request=run_v2.CreateServiceRequest(
                parent=PARENT, service_id="svc", service=run_v2.Service(template=template()), validate_only=True
            )
        )
    )
    assert preview.name == api.name("svc")
    assert api.emulator.state.services == {}
    with pytest.raises(exceptions.InvalidArgument):
        api.services.create_service(
            request=run_v2.CreateServiceRequest(
                parent=PARENT, service_id="svc-", service=run_v2.Service(template=template()), validate_only=True
            )
        )
    svc = api.create_ready("svc")
    svc.template.containers[0].image = IMAGE2
    finish(api.update(svc, validate_only=True))
    finish(api.services.delete_service(request=run_v2.DeleteServiceRequest(name=svc.name, validate_only=True)))
    current = api.get("svc")
    assert current.generation == 1 and current.template.containers[0].image == IMAGE
    assert len(api.revision_ids("svc")) == 1


def test_delete_removes_service_revisions_and_tells_executor(api: Api, emulator: Emulator) -> None:
    svc = api.create_ready("svc")
    svc.template.containers[0].image = IMAGE2
    svc = api.update_ready(svc)
    revisions = [f"{svc.name}/revisions/{r}" for r in api.revision_ids("svc")]
    deleted = finish(api.services.delete_service(name=svc.name))
    assert deleted.name == svc.name and deleted.delete_time
    with pytest.raises(exceptions.NotFound):
        api.get("svc")
    for revision in revisions:
        with pytest.raises(exceptions.NotFound):
            api.revisions.get_revision(name=revision)
    with pytest.raises(exceptions.NotFound):
        api.revision_ids("svc")
    assert emulator.wait_executor_idle()
    executor = emulator.executor
    assert sorted(executor.stopped) == sorted(revisions)  # type: ignore[attr-defined]
    assert executor.deleted_services == [svc.name]  # type: ignore[attr-defined]


def test_delete_revision_only_when_retired(api: Api) -> None:
    svc = api.create_ready("svc")
    first = svc.latest_created_revision
    with pytest.raises(exceptions.FailedPrecondition):
        api.revisions.delete_revision(name=first)
    svc.template.containers[0].image = IMAGE2
    api.update_ready(svc)
    deleted = finish(api.revisions.delete_revision(name=first))
    assert deleted.name == first
    assert api.emulator.wait_executor_idle()
    assert api.emulator.executor.stopped == [first]  # type: ignore[attr-defined]
    assert api.revision_ids("svc") == [short(api.get("svc").latest_created_revision)]
    with pytest.raises(exceptions.NotFound):
        api.revisions.delete_revision(name=first)
    with pytest.raises(exceptions.NotFound):
        api.revisions.get_revision(name=first)


def test_list_services_pages_in_stable_order(api: Api) -> None:
    ids = [f"svc-{i}" for i in range(5)]
    for sid in ids:
        api.create_ready(sid)
    page = api.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=2))
    pages = [[short(s.name) for s in p.services] for p in page.pages]
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    first = api.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=2))
    token = next(iter(first.pages)).next_page_token
    assert token
    finish(api.services.delete_service(name=api.name("svc-0")))
    rest = api.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=2, page_token=token))
    assert [short(s.name) for s in rest] == ids[2:]
    wildcard = api.services.list_services(parent="projects/example-project/locations/-")
    assert [short(s.name) for s in wildcard] == ids[1:]
    assert list(api.services.list_services(parent="projects/other/locations/us-central1")) == []
    with pytest.raises(exceptions.InvalidArgument):
        api.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_token="garbage"))


def test_list_revisions_pages_and_wildcard(api: Api) -> None:
    svc = api.create_ready("svc")
    for image in ("a:1", "a:2", "a:3"):
        svc.template.containers[0].image = image
        svc = api.update_ready(svc)
    other = api.create_ready("other")
    pager = api.revisions.list_revisions(request=run_v2.ListRevisionsRequest(parent=svc.name, page_size=3))
    pages = [[short(r.name) for r in p.revisions] for p in pager.pages]
    assert [len(p) for p in pages] == [3, 1]
    assert [n[:10] for n in pages[0] + pages[1]] == ["svc-00001-", "svc-00002-", "svc-00003-", "svc-00004-"]
    everything = api.revisions.list_revisions(parent=f"{PARENT}/services/-")
    assert [short(r.name) for r in everything][-1] == short(other.latest_created_revision)
    assert len(list(everything)) == 5


def test_revision_limit_deletes_oldest_retired() -> None:
    with Emulator(EmulatorConfig(max_revisions_per_service=2)) as emu:
        channel, services, revisions = clients(emu.address)
        api = Api(emu, services, revisions)
        svc = api.create_ready("svc")
        for image in ("a:1", "a:2", "a:3"):
            svc.template.containers[0].image = image
            svc = api.update_ready(svc)
        assert [r[:10] for r in api.revision_ids("svc")] == ["svc-00003-", "svc-00004-"]
        channel.close()


def test_server_defaults_can_be_turned_off() -> None:
    with Emulator(EmulatorConfig(server_defaults=False)) as emu:
        channel, services, revisions = clients(emu.address)
        svc = Api(emu, services, revisions).create_ready("svc")
        assert run_v2.RevisionTemplate.pb(svc.template) == run_v2.RevisionTemplate.pb(template())
        channel.close()


def test_launch_gets_the_ingress_container(api: Api, emulator: Emulator) -> None:
    container = run_v2.Container(
        image=IMAGE,
        args=["--rest_api_port=8501"],
        env=[
            run_v2.EnvVar(name="MODEL_NAME", value="fraud"),
            run_v2.EnvVar(
                name="TOKEN",
                value_source=run_v2.EnvVarSource(secret_key_ref=run_v2.SecretKeySelector(secret="s", version="1")),
            ),
        ],
        ports=[run_v2.ContainerPort(name="http1", container_port=8501)],
    )
    svc = api.create_ready("svc", run_v2.RevisionTemplate(containers=[container], labels={"tfms": "yes"}))
    assert emulator.wait_executor_idle()
    (launch,) = emulator.executor.launched  # type: ignore[attr-defined]
    assert launch.revision == svc.latest_created_revision and launch.service_id == "svc"
    assert launch.container.image == IMAGE and launch.container.port == 8501
    assert launch.container.args == ("--rest_api_port=8501",)
    assert launch.container.env == (("MODEL_NAME", "fraud"),)
    assert launch.labels == (("tfms", "yes"),)


def test_service_quota_per_location() -> None:
    with Emulator(EmulatorConfig(max_services_per_location=1)) as emu:
        channel, services, revisions = clients(emu.address)
        api = Api(emu, services, revisions)
        api.create_ready("one")
        with pytest.raises(exceptions.ResourceExhausted):
            api.create("two")
        with pytest.raises(exceptions.ResourceExhausted):
            api.update(run_v2.Service(name=api.name("two"), template=template()), allow_missing=True)
        channel.close()


def test_concurrent_updates_are_serialised(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    api.create_ready("svc")

    def label(i: int) -> int:
        svc = api.get("svc")
        svc.labels[f"k{i}"] = "v"
        svc.etag = ""  # last writer wins for this test; every write is a spec change
        return int(api.update_ready(svc).generation)

    with ThreadPoolExecutor(8) as pool:
        generations = list(pool.map(label, range(16)))
    final = api.get("svc")
    assert sorted(generations) == list(range(2, 18))  # each accepted change got its own generation
    assert final.generation == 17
    assert final.observed_generation == final.generation and not final.reconciling
    assert len(api.revision_ids("svc")) == 1


def test_ready_delay_keeps_the_service_reconciling() -> None:
    with Emulator(EmulatorConfig(ready_delay=0.3)) as emu:
        channel, services, revisions = clients(emu.address)
        api = Api(emu, services, revisions)
        op = api.create("svc")
        assert api.get("svc").reconciling is True
        assert finish(op).reconciling is False
        channel.close()


def test_unprefixed_revision_names_when_allowed() -> None:
    """I-012 (Google's v2 sample) uses `green`/`blue`; the prefix rule can be relaxed for it."""
    with Emulator(EmulatorConfig(require_revision_prefix=False)) as emu:
        channel, services, revisions = clients(emu.address)
        api = Api(emu, services, revisions)
        svc = api.create_ready("my-service", template(revision="green"))
        assert short(svc.latest_ready_revision) == "green"
        with pytest.raises(exceptions.InvalidArgument):
            api.create("other", template(revision="Green"))
        channel.close()
