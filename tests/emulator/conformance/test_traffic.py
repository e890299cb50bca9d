"""cloud-run-v2.md, "Traffic" and the traffic/tag rows of the limits table."""

from __future__ import annotations

import re

import pytest
from google.cloud import run_v2

from tests.emulator.emulator_testkit import (
    BY_REVISION,
    IMAGE2,
    LATEST,
    Api,
    short,
    template,
    to_latest,
    to_revision,
    violated_fields,
)


def _two_revisions(cr: Api) -> tuple[run_v2.Service, str, str]:
    svc = cr.create_ready("svc")
    first = short(svc.latest_created_revision)
    svc.template.containers[0].image = IMAGE2
    svc = cr.update_ready(svc)
    return svc, first, short(svc.latest_created_revision)


def test_empty_traffic_means_all_to_latest_ready(cr: Api) -> None:
    """ "An empty `traffic` means 100% to the latest **Ready** revision"."""
    svc = cr.create_ready("svc")
    assert list(svc.traffic) == []
    assert [(t.type_, t.revision, t.percent) for t in svc.traffic_statuses] == [(LATEST, "", 100)]
    svc.template.containers[0].image = IMAGE2
    updated = cr.update_ready(svc)
    assert [(t.type_, t.percent) for t in updated.traffic_statuses] == [(LATEST, 100)]
    assert updated.latest_ready_revision == updated.latest_created_revision != svc.latest_created_revision


@pytest.mark.parametrize(
    ("traffic", "field"),
    [
        ([to_latest(90)], "service.traffic"),
        ([to_latest(50), to_latest(60)], "service.traffic"),
        ([to_latest(101), to_latest(-1)], "service.traffic[0].percent"),
    ],
    ids=["under 100", "over 100", "out of range"],
)
def test_percentages_must_sum_to_100(cr: Api, traffic: list[run_v2.TrafficTarget], field: str) -> None:
    """ "Traffic percent | int32 per target; the sum must be 100 (Knative rule; Cloud Run rejects other sums)"."""
    svc = cr.create_ready("svc")
    svc.traffic = traffic
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.update(svc)
    assert field in violated_fields(err.value)
    assert cr.get("svc").generation == 1


@pytest.mark.parametrize(
    ("traffic", "field"),
    [
        ([run_v2.TrafficTarget(type_=LATEST, revision="svc-x", percent=100)], "service.traffic[0].revision"),
        ([run_v2.TrafficTarget(type_=BY_REVISION, percent=100)], "service.traffic[0].revision"),
        ([to_revision("svc-missing", 100)], "service.traffic[0].revision"),
        ([run_v2.TrafficTarget(percent=100)], "service.traffic[0].type"),
    ],
    ids=["latest with a name", "revision without one", "missing revision", "no type"],
)
def test_targets_must_name_an_existing_revision(cr: Api, traffic: list[run_v2.TrafficTarget], field: str) -> None:
    """ "`TrafficTarget{type: TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST|_REVISION, revision, percent, tag}`":
    a REVISION target names one of the service's revisions; a LATEST target names none."""
    svc = cr.create_ready("svc")
    svc.traffic = traffic
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.update(svc)
    assert field in violated_fields(err.value)


def test_a_target_may_name_the_revision_the_same_request_creates(cr: Api) -> None:
    """A request may route to the revision it creates (`template.revision`), e.g. a tagged dark deploy."""
    svc = cr.create_ready("svc", template(revision="svc-green"), traffic=[to_revision("svc-green", 100)])
    assert [(t.revision, t.percent) for t in svc.traffic_statuses] == [("svc-green", 100)]


@pytest.mark.parametrize(
    ("traffic", "field"),
    [
        ([to_latest(100, tag="Bad_Tag")], "service.traffic[0].tag"),
        ([to_latest(50, tag="same"), to_latest(50, tag="same")], "service.traffic[1].tag"),
        ([to_latest(100, tag="t" * 64)], "service.traffic[0].tag"),
    ],
    ids=["not DNS-1035", "not unique", "too long"],
)
def test_tags_are_unique_dns1035_labels(cr: Api, traffic: list[run_v2.TrafficTarget], field: str) -> None:
    """ "Tags | DNS-1035 label; unique within a service"."""
    svc = cr.create_ready("svc")
    svc.traffic = traffic
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.update(svc)
    assert field in violated_fields(err.value)


def test_tag_uris_in_traffic_statuses(cr: Api) -> None:
    """ "`TrafficTargetStatus` adds `uri`" and "Tag URL form: `https://TAG---SERVICE-HASH-REGION.a.run.app`"."""
    svc, first, second = _two_revisions(cr)
    svc.traffic = [to_revision(first, 80, tag="stable"), to_revision(second, 20, tag="canary")]
    updated = cr.update_ready(svc)
    statuses = [(t.type_, t.revision, t.percent, t.tag) for t in updated.traffic_statuses]
    assert statuses == [(BY_REVISION, first, 80, "stable"), (BY_REVISION, second, 20, "canary")]
    assert re.fullmatch(r"https://svc-[a-z0-9]+-uc\.a\.run\.app", updated.uri)
    host = updated.uri.removeprefix("https://")
    assert [t.uri for t in updated.traffic_statuses] == [f"https://stable---{host}", f"https://canary---{host}"]
    latest = cr.create_ready("other", traffic=[to_latest(100, tag="live")])
    assert latest.traffic_statuses[0].uri == latest.uri.replace("https://", "https://live---")


def test_pinned_traffic_persists_across_deploys(cr: Api) -> None:
    """ "Persistent pinning [doc]: once traffic has been split or pinned to an older revision, **later
    deployments keep that pattern** and the new revision gets 0% until traffic is sent back to latest." """
    svc = cr.create_ready("svc")
    first = short(svc.latest_created_revision)
    svc.traffic = [to_revision(first, 100)]
    svc = cr.update_ready(svc)
    svc.template.containers[0].image = IMAGE2
    deployed = cr.update_ready(svc)
    assert deployed.latest_ready_revision == deployed.latest_created_revision != svc.latest_created_revision
    assert [(t.revision, t.percent) for t in deployed.traffic_statuses] == [(first, 100)]
    deployed.template.containers[0].image = "a:3"  # and again: still pinned
    third = cr.update_ready(deployed)
    assert [(t.revision, t.percent) for t in third.traffic_statuses] == [(first, 100)]
    third.traffic = [to_latest(100)]  # sent back to latest
    back = cr.update_ready(third)
    assert [(t.type_, t.percent) for t in back.traffic_statuses] == [(LATEST, 100)]


def test_split_persists_across_deploys(cr: Api) -> None:
    """The same rule for a split: a deploy keeps the split; the new revision gets 0%."""
    svc, first, second = _two_revisions(cr)
    svc.traffic = [to_revision(first, 50), to_revision(second, 50)]
    svc = cr.update_ready(svc)
    svc.template.containers[0].image = "a:3"
    deployed = cr.update_ready(svc)
    assert short(deployed.latest_ready_revision) not in (first, second)
    assert [(t.revision, t.percent) for t in deployed.traffic_statuses] == [(first, 50), (second, 50)]


def test_dark_deploy_with_a_tag_keeps_other_tags(cr: Api) -> None:
    """A new revision at 0% with its own tag (the documented way to test a revision before it
    serves); existing tags stay where they were and the service URL is never a tag URL."""
    svc = cr.create_ready("my-service", template(revision="my-service-green"))
    svc.traffic = [to_revision("my-service-green", 100, tag="prod")]
    svc = cr.update_ready(svc)
    svc.template = template(IMAGE2, revision="my-service-blue")
    svc.traffic = [to_revision("my-service-green", 100, tag="prod"), to_revision("my-service-blue", 0, tag="tag-name")]
    blue = cr.update_ready(svc)
    assert [(t.revision, t.percent, t.tag) for t in blue.traffic_statuses] == [
        ("my-service-green", 100, "prod"),
        ("my-service-blue", 0, "tag-name"),
    ]
    assert blue.traffic_statuses[1].uri.startswith("https://tag-name---my-service-")
    assert blue.uri == svc.uri
