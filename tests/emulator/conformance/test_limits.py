"""cloud-run-v2.md, the "Revisions" row of the limits table (caps scaled down through config)."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from tests.emulator.emulator_testkit import FAILED, Api, finish, short, template, to_revision
from tfms.emulator import EmulatorConfig

from .conftest import Factory

REVISION_REASON = run_v2.Condition.RevisionReason


def _deploy(cr: Api, svc: run_v2.Service, image: str) -> run_v2.Service:
    svc.template.containers[0].image = image
    return cr.update_ready(svc)


def test_revision_cap_deletes_the_oldest_non_serving(make_cr: Factory) -> None:
    """ "Revisions | **1,000 per service**; the oldest non-serving ones are deleted automatically once
    the cap is reached" (the cap is 1,000 by default; 3 here to keep the test short)."""
    with make_cr(EmulatorConfig(max_revisions_per_service=3)) as cr:
        svc = cr.create_ready("svc", template(revision="svc-a"))
        svc.traffic = [to_revision("svc-a", 100)]  # the oldest keeps serving
        svc = cr.update_ready(svc)
        for name in ("svc-b", "svc-c", "svc-d", "svc-e"):
            svc.template.revision = name
            svc = _deploy(cr, svc, f"img:{name}")
        assert cr.revision_ids("svc") == ["svc-a", "svc-d", "svc-e"]
        assert [(t.revision, t.percent) for t in svc.traffic_statuses] == [("svc-a", 100)]


def test_service_quota_per_region(make_cr: Factory) -> None:
    """ "1,000 services per project+region" (2 here): one more is RESOURCE_EXHAUSTED, by create or
    by upsert, and another region has its own quota."""
    with make_cr(EmulatorConfig(max_services_per_location=2)) as cr:
        cr.create_ready("one")
        cr.create_ready("two")
        with cr.raises("RESOURCE_EXHAUSTED"):
            cr.create("three")
        with cr.raises("RESOURCE_EXHAUSTED"):
            cr.update(run_v2.Service(name=cr.name("three"), template=template()), allow_missing=True)
        elsewhere = cr.services.create_service(
            parent="projects/example-project/locations/europe-west1",
            service_id="three",
            service=run_v2.Service(template=template()),
        )
        assert finish(elsewhere).name.endswith("/europe-west1/services/three")


def test_serving_revision_limit_per_region(make_cr: Factory) -> None:
    """ "4,000 serving revisions per project+region" (2 here): a deploy that would make a third
    revision serve fails with the revision reason ACTIVE_REVISION_LIMIT_REACHED, and traffic stays
    on the last serving state; a deploy that does not add a serving revision still works."""
    with make_cr(EmulatorConfig(max_serving_revisions_per_location=2)) as cr:
        svc = cr.create_ready("svc", template(revision="svc-a"))
        svc.template = template("img:b", revision="svc-b")
        svc.traffic = [to_revision("svc-a", 50), to_revision("svc-b", 50)]
        svc = cr.update_ready(svc)  # two serving: at the limit
        svc.template = template("img:c", revision="svc-c")  # pinned split: c gets 0%, allowed
        svc = cr.update_ready(svc)
        svc.traffic = [to_revision("svc-a", 34), to_revision("svc-b", 33), to_revision("svc-c", 33)]
        with pytest.raises(exceptions.FailedPrecondition) as err:  # the operation's error
            cr.update_ready(svc)
        assert "maximum allowed number of active revisions" in err.value.message
        after = cr.get("svc")
        assert [(t.revision, t.percent) for t in after.traffic_statuses] == [("svc-a", 50), ("svc-b", 50)]
        assert after.terminal_condition.state == FAILED
        c = cr.revisions.get_revision(name=f"{svc.name}/revisions/svc-c")
        active = {cond.type_: cond for cond in c.conditions}["Active"]
        assert active.state == FAILED
        assert active.revision_reason == REVISION_REASON.ACTIVE_REVISION_LIMIT_REACHED
        after.traffic = [to_revision("svc-b", 50), to_revision("svc-c", 50)]  # swap one: still two
        moved = cr.update_ready(after)
        assert [short(t.revision) for t in moved.traffic_statuses] == ["svc-b", "svc-c"]


def test_tag_quota_deletes_zero_percent_tags_oldest_first(make_cr: Factory) -> None:
    """"Tags | ... **2,000 tags per project+region**. When the limit is hit, tags with no traffic %
    are deleted oldest first" (3 here), in any service of the region; tags with traffic stay."""
    with make_cr(EmulatorConfig(max_tags_per_location=3)) as cr:
        one = cr.create_ready("one", template(revision="one-a"))
        one.template = template("img:b", revision="one-b")
        one.traffic = [to_revision("one-a", 100, tag="live"), to_revision("one-b", 0, tag="oldest")]
        one = cr.update_ready(one)
        two = cr.create_ready("two", template(revision="two-a"), traffic=[to_revision("two-a", 100, tag="prod")])
        two.template = template("img:c", revision="two-b")
        two.traffic = [*two.traffic, to_revision("two-b", 0, tag="preview")]  # the 4th tag in the region
        two = cr.update_ready(two)
        assert [t.tag for t in two.traffic_statuses] == ["prod", "preview"]
        one = cr.get("one")  # its 0% tag, the oldest, was deleted
        assert [(t.revision, t.percent, t.tag) for t in one.traffic_statuses] == [("one-a", 100, "live")]
        assert [(t.revision, t.percent, t.tag) for t in one.traffic] == [("one-a", 100, "live")]
        assert one.observed_generation == one.generation and not one.reconciling
