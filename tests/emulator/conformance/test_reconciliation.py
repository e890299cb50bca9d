"""cloud-run-v2.md, "Service fields (v2)": generations, revisions and the reconciliation contract."""

from __future__ import annotations

import time

from google.cloud import run_v2

from tests.emulator.emulator_testkit import (
    IMAGE2,
    RECONCILING,
    SUCCEEDED,
    Api,
    ManualExecutor,
    finish,
    template,
    to_revision,
)
from tfms.emulator import EmulatorConfig

from .conftest import Factory


def _converged(svc: run_v2.Service) -> bool:
    """The contract's success equalities."""
    wanted = [(t.type_, t.revision, t.percent, t.tag) for t in svc.traffic]
    actual = [(t.type_, t.revision, t.percent, t.tag) for t in svc.traffic_statuses]
    return (
        not svc.reconciling
        and (actual == wanted or (not wanted and [(p, tag) for _, _, p, tag in actual] == [(100, "")]))
        and svc.observed_generation == svc.generation
        and svc.latest_ready_revision == svc.latest_created_revision
    )


def test_converged_service_satisfies_the_equalities(cr: Api) -> None:
    """ "Afterwards, success means `traffic == traffic_statuses`, `observed_generation == generation`
    and `latest_ready_revision == latest_created_revision`." """
    svc = cr.create_ready("svc", template(revision="svc-v1"))
    assert _converged(svc) and svc.terminal_condition.state == SUCCEEDED and svc.uri
    svc.template = template(IMAGE2, revision="svc-v2")
    svc.traffic = [to_revision("svc-v1", 80, tag="stable"), to_revision("svc-v2", 20, tag="canary")]
    updated = cr.update_ready(svc)
    assert _converged(updated) and updated.generation == 2
    assert _converged(cr.get("svc"))


def test_reconciling_holds_transient_values(held: tuple[Api, ManualExecutor]) -> None:
    """ "while `reconciling=true`, `observed_generation`, `latest_ready_revision`, `traffic_statuses`
    and `uri` hold transient values" — the previous ones, until the new revision is ready."""
    cr, manual = held
    op = cr.create("svc")
    first = manual.wait_launched(1)
    pending = cr.get("svc")
    assert pending.reconciling and pending.terminal_condition.state == RECONCILING
    assert pending.generation == 1 and pending.observed_generation == 0
    assert pending.latest_created_revision == first.revision and pending.latest_ready_revision == ""
    assert list(pending.traffic_statuses) == [] and pending.uri == ""
    assert cr.revisions.get_revision(name=first.revision).reconciling
    manual.ready(first.revision)
    svc = finish(op)

    svc.template.containers[0].image = IMAGE2
    op = cr.update(svc)
    second = manual.wait_launched(2)
    during = cr.get("svc")
    assert during.reconciling and during.generation == 2 and during.observed_generation == 1
    assert during.latest_created_revision == second.revision and during.latest_ready_revision == first.revision
    assert list(during.traffic_statuses) == list(svc.traffic_statuses) and during.uri == svc.uri
    manual.ready(second.revision)
    assert _converged(finish(op))


def test_reconciling_until_ready_after_a_delay(make_cr: Factory) -> None:
    """The issue: "reconciling true until converged (after a configurable delay)"."""
    delay = 0.4
    with make_cr(EmulatorConfig(ready_delay=delay)) as cr:
        started = time.monotonic()
        op = cr.create("svc")
        early = cr.get("svc")
        if time.monotonic() - started < delay:  # observed before the delay ran out
            assert early.reconciling and early.observed_generation == 0
        svc = finish(op)
        assert time.monotonic() - started >= delay
        assert _converged(svc)


def test_template_changes_make_revisions(cr: Api) -> None:
    """Every template change is a new revision (`latest_created_revision` moves, `generation` +1)."""
    svc = cr.create_ready("svc")
    svc.template.containers[0].image = IMAGE2
    updated = cr.update_ready(svc)
    assert updated.generation == 2 and updated.latest_created_revision != svc.latest_created_revision
    assert len(cr.revision_ids("svc")) == 2
    updated.template.labels["team"] = "ml"
    assert cr.update_ready(updated).generation == 3
    assert len(cr.revision_ids("svc")) == 3


def test_service_level_changes_make_no_revision(cr: Api) -> None:
    """Traffic, scaling, labels, ingress and IAM are service-level: no new revision (the issue:
    "service-level changes (traffic, scaling, IAM) do not")."""
    svc = cr.create_ready("svc")
    revision = svc.latest_created_revision
    svc.labels["team"] = "ml"
    svc.scaling.min_instance_count = 1
    svc.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY  # type: ignore[assignment]
    svc.traffic = [to_revision(revision.rsplit("/", 1)[-1], 100, tag="pinned")]
    updated = cr.update_ready(svc)
    assert updated.generation == 2 and updated.latest_created_revision == revision
    policy = cr.services.get_iam_policy(request={"resource": svc.name})
    policy.bindings.add(role="roles/run.invoker", members=["allUsers"])
    cr.services.set_iam_policy(request={"resource": svc.name, "policy": policy})
    assert cr.get("svc").generation == 2
    assert len(cr.revision_ids("svc")) == 1


def test_unchanged_update_changes_nothing(cr: Api) -> None:
    """`generation` is "a number that monotonically increases every time the user modifies the
    desired state": re-sending the same spec (or the original, undefaulted one) is no change."""
    svc = cr.create_ready("svc")
    again = cr.update_ready(svc)
    assert again.generation == 1 and again.etag == svc.etag
    again = cr.update_ready(run_v2.Service(name=svc.name, template=template()))
    assert again.generation == 1
    assert len(cr.revision_ids("svc")) == 1


def test_output_only_fields_from_the_client_are_ignored(cr: Api) -> None:
    """ "Output only: `uid`, `generation` …, `reconciling`, `terminal_condition`, …" — values a
    client sends for them are not taken."""
    sent = run_v2.Service(
        template=template(),
        uid="client-uid",
        generation=42,
        uri="https://evil.example",
        latest_ready_revision="projects/x/locations/y/services/z/revisions/z-1",
        reconciling=True,
    )
    svc = finish(
        cr.services.create_service(
            parent="projects/example-project/locations/us-central1", service_id="svc", service=sent
        )
    )
    assert svc.uid != "client-uid" and svc.generation == 1 and svc.uri != "https://evil.example"
    assert svc.latest_ready_revision.startswith(svc.name + "/revisions/") and not svc.reconciling


def test_revision_scaling_max_defaults_to_100(cr: Api) -> None:
    """ "`scaling{min_instance_count, max_instance_count (server default 100)}`"."""
    svc = cr.create_ready("svc")
    assert svc.template.scaling.max_instance_count == 100
    assert cr.revisions.get_revision(name=svc.latest_created_revision).scaling.max_instance_count == 100
