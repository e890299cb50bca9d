"""Services and revisions through the real sync client: creation, generations, naming, validation."""

from __future__ import annotations

import re

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

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
)
from tfms.emulator import Emulator, EmulatorConfig


def test_create_returns_pending_operation_then_converged_service(api: Api) -> None:
    """The emulator's own choices on top of the contract: URL shapes, caller, server defaults."""
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


def test_deletes_stop_revisions_in_the_executor(api: Api, emulator: Emulator) -> None:
    """DeleteRevision stops that revision; DeleteService stops the rest and drops the service's
    routes (the API side of both rules is in conformance/test_rpcs.py)."""
    svc = api.create_ready("svc")
    first = svc.latest_created_revision
    svc.template.containers[0].image = IMAGE2
    svc = api.update_ready(svc)
    finish(api.revisions.delete_revision(name=first))
    assert emulator.wait_executor_idle()
    executor = emulator.executor
    assert executor.stopped == [first]  # type: ignore[attr-defined]
    finish(api.services.delete_service(name=svc.name))
    assert emulator.wait_executor_idle()
    assert executor.stopped == [first, svc.latest_created_revision]  # type: ignore[attr-defined]
    assert executor.deleted_services == [svc.name]  # type: ignore[attr-defined]


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
