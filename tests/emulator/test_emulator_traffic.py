"""Traffic: validation, splits, tags and their URLs, pinning, and what the executor is told."""

from __future__ import annotations

import re

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from tests.emulator.emulator_testkit import (
    BY_REVISION,
    IMAGE2,
    LATEST,
    RECONCILING,
    SUCCEEDED,
    Api,
    ManualExecutor,
    short,
    template,
    to_latest,
    to_revision,
    violated_fields,
)
from tfms.emulator import Emulator


def _two_revisions(api: Api) -> tuple[run_v2.Service, str, str]:
    svc = api.create_ready("svc")
    first = short(svc.latest_created_revision)
    svc.template.containers[0].image = IMAGE2
    svc = api.update_ready(svc)
    return svc, first, short(svc.latest_created_revision)


def test_split_with_tags_reports_statuses_and_routes(api: Api, emulator: Emulator) -> None:
    svc, first, second = _two_revisions(api)
    svc.traffic = [to_revision(first, 80, tag="stable"), to_revision(second, 20, tag="canary")]
    updated = api.update_ready(svc)

    statuses = [(t.type_, t.revision, t.percent, t.tag) for t in updated.traffic_statuses]
    assert statuses == [(BY_REVISION, first, 80, "stable"), (BY_REVISION, second, 20, "canary")]
    assert statuses == [(t.type_, t.revision, t.percent, t.tag) for t in updated.traffic]  # converged
    host = updated.uri.removeprefix("https://")
    assert [t.uri for t in updated.traffic_statuses] == [f"https://stable---{host}", f"https://canary---{host}"]
    assert re.fullmatch(r"https://canary---svc-[a-z0-9]{10}-uc\.a\.run\.app", updated.traffic_statuses[1].uri)
    assert updated.generation == 3 == updated.observed_generation

    assert emulator.wait_executor_idle()
    split, tags = emulator.executor.routes[svc.name]  # type: ignore[attr-defined]
    assert split == [(f"{svc.name}/revisions/{first}", 80), (f"{svc.name}/revisions/{second}", 20)]
    assert tags == {"stable": f"{svc.name}/revisions/{first}", "canary": f"{svc.name}/revisions/{second}"}


def test_pinned_traffic_persists_across_deploys(api: Api, emulator: Emulator) -> None:
    """Persistent pinning: once pinned, a new revision gets 0% until traffic goes back to LATEST."""
    svc = api.create_ready("svc")
    first = short(svc.latest_created_revision)
    svc.traffic = [to_revision(first, 100)]
    svc = api.update_ready(svc)
    svc.template.containers[0].image = IMAGE2
    deployed = api.update_ready(svc)
    assert deployed.latest_ready_revision != svc.latest_ready_revision
    assert [(t.revision, t.percent) for t in deployed.traffic_statuses] == [(first, 100)]
    assert emulator.wait_executor_idle()
    assert emulator.executor.routes[svc.name][0] == [(f"{svc.name}/revisions/{first}", 100)]  # type: ignore[attr-defined]


def test_latest_with_tag_gets_tag_url(api: Api) -> None:
    svc = api.create_ready("svc", traffic=[to_latest(100, tag="live")])
    (status,) = svc.traffic_statuses
    assert status.type_ == LATEST and status.tag == "live"
    assert status.uri == svc.uri.replace("https://", "https://live---")


def test_dark_deploy_with_tag_keeps_other_tags(api: Api) -> None:
    """I-013 and B-042: a new revision at 0% with its own tag; existing tags stay where they were."""
    svc = api.create_ready("my-service", template(revision="my-service-green"))
    svc.traffic = [to_revision("my-service-green", 100, tag="prod")]
    svc = api.update_ready(svc)
    svc.template = template(IMAGE2, revision="my-service-blue")
    svc.traffic = [to_revision("my-service-green", 100, tag="prod"), to_revision("my-service-blue", 0, tag="tag-name")]
    blue = api.update_ready(svc)  # naming the revision this very update creates is allowed
    assert [(t.revision, t.percent, t.tag) for t in blue.traffic_statuses] == [
        ("my-service-green", 100, "prod"),
        ("my-service-blue", 0, "tag-name"),
    ]
    assert blue.traffic_statuses[1].uri.startswith("https://tag-name---my-service-")
    assert blue.uri == svc.uri  # the service URL is never a tag URL


@pytest.mark.parametrize(
    ("traffic", "field"),
    [
        ([to_latest(90)], "service.traffic"),
        ([to_latest(50), to_latest(60)], "service.traffic"),
        ([run_v2.TrafficTarget(type_=LATEST, revision="svc-x", percent=100)], "service.traffic[0].revision"),
        ([run_v2.TrafficTarget(type_=BY_REVISION, percent=100)], "service.traffic[0].revision"),
        ([to_revision("svc-missing", 100)], "service.traffic[0].revision"),
        ([to_latest(101), to_latest(-1)], "service.traffic[0].percent"),
        ([to_latest(100, tag="Bad_Tag")], "service.traffic[0].tag"),
        ([to_latest(50, tag="same"), to_latest(50, tag="same")], "service.traffic[1].tag"),
        ([run_v2.TrafficTarget(percent=100)], "service.traffic[0].type"),
    ],
)
def test_traffic_validation(api: Api, traffic: list[run_v2.TrafficTarget], field: str) -> None:
    svc = api.create_ready("svc")
    svc.traffic = traffic
    with pytest.raises(exceptions.InvalidArgument) as err:
        api.update(svc)
    assert field in violated_fields(err.value)
    assert api.get("svc").generation == 1


def test_traffic_may_name_the_revision_created_by_the_same_create(api: Api) -> None:
    svc = api.create_ready("svc", template(revision="svc-green"), traffic=[to_revision("svc-green", 100)])
    assert [(t.revision, t.percent) for t in svc.traffic_statuses] == [("svc-green", 100)]


def test_transient_values_while_reconciling(manual_api: Api, manual: ManualExecutor) -> None:
    """While reconciling, observed_generation / latest_ready / traffic_statuses / uri keep old values."""
    op = manual_api.create("svc")
    launch = manual.wait_launched(1)
    pending = manual_api.get("svc")
    assert pending.reconciling is True
    assert pending.generation == 1 and pending.observed_generation == 0
    assert pending.latest_created_revision == launch.revision and pending.latest_ready_revision == ""
    assert list(pending.traffic_statuses) == [] and pending.uri == ""
    assert pending.terminal_condition.state == RECONCILING
    rev = manual_api.revisions.get_revision(name=launch.revision)
    assert rev.reconciling is True
    manual.ready(launch.revision)
    svc = op.result(timeout=5)
    assert svc.uri == "https://svc.manual.test"

    svc.template.containers[0].image = IMAGE2
    op = manual_api.update(svc)
    second = manual.wait_launched(2)
    during = manual_api.get("svc")
    assert during.reconciling is True and during.generation == 2 and during.observed_generation == 1
    assert during.latest_created_revision == second.revision
    assert during.latest_ready_revision == launch.revision
    assert list(during.traffic_statuses) == list(svc.traffic_statuses) and during.uri == svc.uri
    # A second update while the first is in flight: both operations end with the reconciliation.
    during.labels["x"] = "y"
    op2 = manual_api.update(during)
    assert not op.done() and not op2.done()
    manual.ready(second.revision)
    assert op.result(timeout=5).observed_generation == 3 == op2.result(timeout=5).observed_generation
    final = manual_api.get("svc")
    assert final.terminal_condition.state == SUCCEEDED and final.labels == {"x": "y"}
    assert manual.routes[final.name] == ([(second.revision, 100)], {})
