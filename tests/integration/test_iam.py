"""Invokers against the emulator through the real client: additive by default (B-018), etag
read-modify-write retried on conflict (B-017), public both ways incl. an organisation that forbids
allUsers, IAM independent of the service spec (B-013), and the cases I-016/I-017/I-018."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport
from google.iam.v1 import policy_pb2

from tests.conftest import base_object
from tfms.api.defaults import Defaults
from tfms.api.validation import parse, validate
from tfms.backends.cloudrun import CloudRun
from tfms.emulator import Emulator, EmulatorConfig
from tfms.plan.convergence import Phase
from tfms.plan.iam import Policy
from tfms.reconcile.iam import apply_iam
from tfms.reconcile.objects import Outcome, reconcile_object
from tfms.reconcile.retry import Backoff
from tfms.reconcile.service import apply_service

DEFAULTS = Defaults()
INVOKER = "roles/run.invoker"
ADMIN = "roles/run.admin"
APP = "serviceAccount:app@example-project.iam.gserviceaccount.com"
PUSH = "serviceAccount:pubsub-push@example-project.iam.gserviceaccount.com"
CI = "serviceAccount:ci@example-project.iam.gserviceaccount.com"
TEAM = "group:ml-team@example.com"
OPS = "user:ops@example.com"
NAME = "projects/example-project/locations/us-central1/services/fraud-scorer"
WRITES = {"CreateService", "UpdateService", "DeleteService", "SetIamPolicy"}
FAST = Backoff(attempts=6, initial=0.01, maximum=0.05)


def _body(name: str = "fraud-scorer", **spec: Any) -> dict[str, Any]:
    obj = base_object(**spec)
    obj["metadata"].update(name=name, generation=1, uid="0b0e6b2e-1111-4c1a-9a55-000000000007")
    obj["status"] = {}
    return obj


async def _until_done(api: Any, body: dict[str, Any], **kwargs: Any) -> tuple[Outcome, list[str]]:
    """Reconcile until done; every event reason seen on the way."""
    reasons: list[str] = []
    for _ in range(100):
        outcome = await reconcile_object(api, body, DEFAULTS, now="2026-12-03T00:00:00Z", **kwargs)
        reasons += [e.reason for e in outcome.events]
        body["status"] = outcome.status
        if outcome.done or outcome.permanent:
            return outcome, reasons
    raise AssertionError(f"not done: {outcome}")


def _respec(body: dict[str, Any], **access: Any) -> None:
    body["spec"]["access"] = access
    body["metadata"]["generation"] += 1


def _invokers(raw: run_v2.ServicesClient, name: str = NAME) -> list[str]:
    policy = raw.get_iam_policy(request={"resource": name})
    return sorted(m for b in policy.bindings if b.role == INVOKER for m in b.members)


def _grant(raw: run_v2.ServicesClient, member: str, role: str = INVOKER, name: str = NAME) -> None:
    """Someone else's additive read-modify-write (with the etag)."""
    policy = raw.get_iam_policy(request={"resource": name})
    for binding in policy.bindings:
        if binding.role == role:
            binding.members.append(member)
            break
    else:
        policy.bindings.add(role=role, members=[member])
    raw.set_iam_policy(request={"resource": name, "policy": policy})


def _writes(emulator: Emulator, method: str | None = None) -> int:
    return sum(1 for c in emulator.control.calls if (c.method == method if method else c.method in WRITES))


async def test_out_of_band_member_survives_every_change_in_default_mode(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient) -> None:
    """B-018: the Pub/Sub push identity granted by someone else is there before and after each pass."""
    body = _body(access={"invokers": [APP]})
    done, reasons = await _until_done(backend, body)
    assert done.ready and "InvokerGranted" in reasons
    assert _invokers(raw_client) == [APP]
    _grant(raw_client, PUSH)
    _grant(raw_client, OPS, role=ADMIN)

    _respec(body, invokers=[TEAM])
    done, reasons = await _until_done(backend, body)
    assert _invokers(raw_client) == sorted([TEAM, PUSH])
    assert sorted(reasons) == ["InvokerGranted", "InvokerRevoked"]
    assert done.status["access"] == {"invokersMode": "Additive", "managedInvokers": [TEAM], "otherInvokers": [PUSH]}

    _respec(body)  # no invokers at all: tfms takes back only its own grant
    await _until_done(backend, body)
    assert _invokers(raw_client) == [PUSH]
    policy = raw_client.get_iam_policy(request={"resource": NAME})
    assert [(b.role, list(b.members)) for b in policy.bindings if b.role == ADMIN] == [(ADMIN, [OPS])]


async def test_record_of_granted_members_lives_on_the_service(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient) -> None:
    """Losing the cluster loses status, not the record: a fresh object (no status) still knows
    which grants are tfms's, and a template change (a full replace) keeps the record."""
    body = _body(access={"invokers": [APP]})
    await _until_done(backend, body)
    assert raw_client.get_service(name=NAME).annotations["tfms.dev/invokers"] == f'["{APP}"]'
    body["spec"]["scaling"] = {"maxInstances": 7}  # a new revision: UpdateService replaces the service
    body["metadata"]["generation"] += 1
    await _until_done(backend, body)
    assert raw_client.get_service(name=NAME).annotations["tfms.dev/invokers"] == f'["{APP}"]'

    _grant(raw_client, PUSH)
    fresh = _body(access={"invokers": []})
    fresh["spec"]["scaling"] = {"maxInstances": 7}
    await _until_done(backend, fresh)
    assert _invokers(raw_client) == [PUSH]


async def test_converged_access_writes_nothing(backend: CloudRun, emulator: Emulator) -> None:
    body = _body(access={"invokers": [APP, TEAM], "public": True})
    done, _ = await _until_done(backend, body)
    writes = _writes(emulator)
    again = await reconcile_object(backend, body, DEFAULTS, now="2026-12-03T00:00:00Z")
    assert again.events == [] and again.done and again.status == done.status
    assert _writes(emulator) == writes
    assert [c.method for c in emulator.control.calls][-1] == "GetIamPolicy"


class _Interleaved(CloudRun):
    """B-017's minimal trigger: between tfms's GetIamPolicy and its SetIamPolicy, another writer
    completes its own read-modify-write, so tfms's etag is stale once."""

    def __init__(self, backend: CloudRun, other: Any) -> None:
        self.__dict__.update(backend.__dict__)
        self._other = other

    async def get_iam_policy(self, resource: str) -> Policy:
        policy = await super().get_iam_policy(resource)
        if self._other is not None:
            other, self._other = self._other, None
            await asyncio.to_thread(other)
        return policy


async def test_etag_conflict_is_reread_and_both_members_survive(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient) -> None:
    body = _body()
    await _until_done(backend, body)
    emulator.control.clear_calls()
    interleaved = _Interleaved(backend, lambda: _grant(raw_client, CI))
    result = await apply_iam(interleaved, parse({**body, "spec": {**body["spec"], "access": {"public": True}}}),
                             await backend.get_service(NAME), FAST)
    assert _invokers(raw_client) == sorted(["allUsers", CI])
    sets = emulator.control.calls_to("SetIamPolicy")
    assert len(sets) == 3  # the other writer's, tfms's refused one (stale etag), tfms's retry
    assert [a.member for a in result.audit] == ["allUsers"]


async def test_two_concurrent_writers_keep_their_members(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient) -> None:
    """Two tfms passes on two services plus one shared policy is not possible; two writers on one
    policy are: both read the same etag (reads are slowed so they overlap), one wins, the other
    is refused with ABORTED, reads again and re-applies its change."""
    body = _body()
    await _until_done(backend, body)
    svc_a = parse({**body, "spec": {**body["spec"], "access": {"invokers": [APP]}}})
    svc_b = parse({**body, "spec": {**body["spec"], "access": {"invokers": [TEAM]}}})
    live = await backend.get_service(NAME)
    emulator.control.delay("GetIamPolicy", 0.3)
    emulator.control.clear_calls()
    a, b = await asyncio.gather(apply_iam(backend, svc_a, live, FAST), apply_iam(backend, svc_b, live, FAST))
    emulator.control.delay("GetIamPolicy", 0)
    assert _invokers(raw_client) == sorted([APP, TEAM])
    assert len(emulator.control.calls_to("SetIamPolicy")) >= 3  # at least one refused and retried
    assert [x.member for x in a.audit + b.audit if x.action == "grant"] == [APP, TEAM]


def _grant_retrying(raw: run_v2.ServicesClient, member: str) -> int:
    """gcloud's add-iam-policy-binding: an etag read-modify-write, read again on ABORTED; its tries."""
    for attempt in range(1, 50):
        try:
            _grant(raw, member)
            return attempt
        except Exception as exc:  # google.api_core.exceptions.Aborted: a stale etag
            if "ABORTED" not in repr(exc) and "Aborted" not in type(exc).__name__:
                raise
    raise AssertionError(f"{member}: still conflicting after 50 tries")


async def test_many_concurrent_writers_keep_every_member(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient) -> None:
    """Issue 10, item 4: six tfms IAM steps (each granting its own member) and three outside tools
    write one policy at once, reads slowed so they overlap; every writer's member survives and
    nothing another writer granted is lost. Writers whose retries run out fail loudly
    (EtagConflict, a transient outcome the operator retries) and are run again, as kopf would."""
    from tfms.backends.errors import EtagConflict

    body = _body()
    await _until_done(backend, body)
    live = await backend.get_service(NAME)
    ours = [f"serviceAccount:app-{i}@example-project.iam.gserviceaccount.com" for i in range(6)]
    theirs = [f"user:person-{i}@example.com" for i in range(3)]
    emulator.control.delay("GetIamPolicy", 0.05)
    emulator.control.clear_calls()

    async def tfms_writer(member: str) -> int:
        svc = parse({**body, "spec": {**body["spec"], "access": {"invokers": [member]}}})
        for attempt in range(1, 20):
            try:
                await apply_iam(backend, svc, live, FAST)
                return attempt
            except EtagConflict:
                continue
        raise AssertionError(f"{member}: never written")

    results = await asyncio.gather(*(tfms_writer(m) for m in ours),
                                   *(asyncio.to_thread(_grant_retrying, raw_client, m) for m in theirs))
    emulator.control.delay("GetIamPolicy", 0)
    assert _invokers(raw_client) == sorted(ours + theirs)
    sets = len(emulator.control.calls_to("SetIamPolicy"))
    assert sets > len(ours) + len(theirs)  # they did overlap: some writes were refused and redone
    print(f"\n{len(results)} concurrent IAM writers, {sets} SetIamPolicy calls, every member kept")


async def test_injected_aborted_is_retried_with_backoff(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient) -> None:
    body = _body()
    await _until_done(backend, body)
    emulator.control.fail_next("SetIamPolicy", grpc.StatusCode.ABORTED, count=2,
                               message="There were concurrent policy changes. Please retry the whole "
                                       "read-modify-write with exponential backoff.")
    _respec(body, invokers=[APP])
    await _until_done(backend, body)
    assert _invokers(raw_client) == [APP]
    assert len(emulator.control.calls_to("SetIamPolicy")) == 3


async def test_public_both_ways(backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient) -> None:
    body = _body()
    done, _ = await _until_done(backend, body)
    assert _invokers(raw_client) == [] and not raw_client.get_service(name=NAME).invoker_iam_disabled
    assert _writes(emulator, "SetIamPolicy") == 0  # nothing asked for, nothing read or written

    _respec(body, public=True)
    done, reasons = await _until_done(backend, body)
    assert _invokers(raw_client) == ["allUsers"] and reasons == ["InvokerGranted"]
    assert not raw_client.get_service(name=NAME).invoker_iam_disabled
    assert done.status["access"]["public"] == "allUsers"

    _respec(body, public=False)
    done, reasons = await _until_done(backend, body)
    assert _invokers(raw_client) == [] and reasons == ["InvokerRevoked"]
    assert "public" not in done.status["access"]


@pytest.fixture
def blocked_emulator() -> Iterator[Emulator]:
    """An organisation with Domain Restricted Sharing: allUsers cannot be granted."""
    emu = Emulator(EmulatorConfig(ready_delay=0.0, public_members_blocked=True))
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
async def blocked_backend(blocked_emulator: Emulator) -> AsyncIterator[CloudRun]:
    api = CloudRun.connect(blocked_emulator.address)
    yield api
    await api.close()


@pytest.fixture
def blocked_raw(blocked_emulator: Emulator) -> Iterator[run_v2.ServicesClient]:
    channel = grpc.insecure_channel(blocked_emulator.address)
    yield run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
    channel.close()


async def test_public_where_the_organisation_forbids_allusers(
        blocked_backend: CloudRun, blocked_emulator: Emulator, blocked_raw: run_v2.ServicesClient,
        caplog: pytest.LogCaptureFixture) -> None:
    body = _body(access={"invokers": [APP], "public": True})
    caplog.set_level(logging.INFO, logger="tfms.audit")
    done, reasons = await _until_done(blocked_backend, body)
    assert done.ready
    assert _invokers(blocked_raw) == [APP]  # the rest of the change still went through
    assert blocked_raw.get_service(name=NAME).invoker_iam_disabled
    assert sorted(reasons) == ["Created", "InvokerGranted", "PublicViaInvokerIamDisabled", "Ready"]
    assert done.status["access"]["public"] == "invokerIamDisabled"
    assert "organisation forbids allUsers" in done.status["access"]["message"]
    audit = [r for r in caplog.records if getattr(r, "audit", False)]
    assert [(r.who, r.member, r.action) for r in audit] == [  # type: ignore[attr-defined]
        ("tfms", APP, "grant"), ("tfms", "allUsers", "invoker-iam-disabled")]

    writes = _writes(blocked_emulator)  # converged: no retry of the refused grant, no write
    again = await reconcile_object(blocked_backend, body, DEFAULTS, now="2026-12-03T00:00:00Z")
    assert again.events == [] and _writes(blocked_emulator) == writes

    _respec(body, invokers=[APP], public=False)  # and back: invoker IAM on again, never implied
    await _until_done(blocked_backend, body)
    assert not blocked_raw.get_service(name=NAME).invoker_iam_disabled
    assert _invokers(blocked_raw) == [APP]


async def test_every_change_is_an_audit_line(backend: CloudRun, emulator: Emulator,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tfms.audit")
    body = _body(access={"invokers": [APP]})
    await _until_done(backend, body)
    _respec(body, invokers=[TEAM])
    await _until_done(backend, body)
    audit = [vars(r) for r in caplog.records if getattr(r, "audit", False)]
    assert [(a["who"], a["member"], a["role"], a["action"], a["before"], a["after"]) for a in audit] == [
        ("tfms", APP, INVOKER, "grant", [], [APP]),
        ("tfms", TEAM, INVOKER, "grant", [APP], [TEAM]),
        ("tfms", APP, INVOKER, "revoke", [APP], [TEAM]),
    ]
    assert audit[0]["service"] == NAME
    assert "tfms granted roles/run.invoker to " + APP in audit[0]["msg"]


def _case(shared_dir: Path, prefix: str) -> Any:
    (path,) = sorted((shared_dir / "cases" / "inputs").glob(f"{prefix}-*.yaml"))
    return yaml.safe_load(path.read_text())


async def test_i016_whole_policy_replace_becomes_a_role_level_intent(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient, shared_dir: Path) -> None:
    """I-016 replaces the whole policy with `roles/run.invoker: [allUsers]`. tfms's nearest intent is
    `public: true` with invokersMode Authoritative: the invoker binding becomes exactly [allUsers],
    but other roles are never touched (a whole-policy replace would drop them)."""
    doc = _case(shared_dir, "016")
    (policy,) = [r for r in doc["terraform_resources"] if r["type"] == "data.google_iam_policy"]
    assert policy["attributes"]["binding"] == [{"role": INVOKER, "members": ["allUsers"]}]
    body = _body("my-public-service")
    name = NAME.replace("fraud-scorer", "my-public-service")
    await _until_done(backend, body)
    _grant(raw_client, PUSH, name=name)
    _grant(raw_client, OPS, role=ADMIN, name=name)
    _respec(body, public=True, invokersMode="Authoritative")
    done, _ = await _until_done(backend, body)
    assert _invokers(raw_client, name) == ["allUsers"]
    stored = raw_client.get_iam_policy(request={"resource": name})
    assert sorted((b.role, list(b.members)) for b in stored.bindings) == [(ADMIN, [OPS]), (INVOKER, ["allUsers"])]
    assert done.status["access"]["managedInvokers"] == ["allUsers"]


async def test_i017_authoritative_binding_for_one_role(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient, shared_dir: Path) -> None:
    """I-017 (`google_cloud_run_service_iam_binding`, authoritative for one role) is
    invokersMode: Authoritative; it is explicit, because it removes members others granted (B-018)."""
    doc = _case(shared_dir, "017")
    (binding,) = [r for r in doc["terraform_resources"] if r["type"] == "google_cloud_run_service_iam_binding"]
    assert (binding["attributes"]["role"], binding["attributes"]["members"]) == (INVOKER, ["allUsers"])
    name = NAME.replace("fraud-scorer", "public-service")
    body = _body("public-service")
    await _until_done(backend, body)
    _grant(raw_client, PUSH, name=name)
    _respec(body, public=True, invokersMode="Authoritative")
    _, reasons = await _until_done(backend, body)
    assert _invokers(raw_client, name) == ["allUsers"]
    assert sorted(reasons) == ["InvokerGranted", "InvokerRevoked"]
    # allUsers itself is never an invoker entry: public is the only way, and never implied.
    errors = validate(_body("public-service", access={"invokers": ["allUsers"]}))
    assert [(e.path, e.rule) for e in errors] == [("spec.access.invokers[0]", "invoker-member")]
    assert "use public: true instead of allUsers" in errors[0].message


async def test_i018_single_member_grant_is_the_default(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient, shared_dir: Path) -> None:
    """I-018 (`..._iam_member`, non-authoritative) is the default mode: allUsers is added beside
    the members already there, and taken back alone."""
    doc = _case(shared_dir, "018")
    attrs = doc["terraform_resource"]["attributes"]
    assert (doc["terraform_resource"]["type"], attrs["role"], attrs["member"]) == (
        "google_cloud_run_v2_service_iam_member", INVOKER, "allUsers")
    body = _body()
    await _until_done(backend, body)
    _grant(raw_client, CI)
    _respec(body, public=True)
    await _until_done(backend, body)
    assert _invokers(raw_client) == sorted(["allUsers", CI])
    _respec(body, public=False)
    await _until_done(backend, body)
    assert _invokers(raw_client) == [CI]


async def test_b013_iam_only_change_touches_no_template_and_foreign_services_are_refused(
        backend: CloudRun, emulator: Emulator, raw_client: run_v2.ServicesClient) -> None:
    """B-013: granting invokers uses the IAM API (plus a masked annotation update), never a
    template write or a new revision; a service deployed by other tooling is refused once,
    without any write and without looping."""
    body = _body(access={"invokers": [APP]})
    done, _ = await _until_done(backend, body)
    revisions = done.status["latestReadyRevision"]
    emulator.control.clear_calls()
    _respec(body, invokers=[APP, TEAM])
    done, _ = await _until_done(backend, body)
    assert done.status["latestReadyRevision"] == revisions
    updates = emulator.control.calls_to("UpdateService")
    assert [list(u.update_mask.paths) for u in updates] == [["annotations"]]
    assert not emulator.control.calls_to("CreateService")

    # Deployed by CI, not by tfms: the IAM-only intent must not adopt it.
    hello = run_v2.Container(image="us-docker.pkg.dev/cloudrun/container/hello")
    template = run_v2.RevisionTemplate(containers=[hello])
    raw_client.create_service(parent="projects/example-project/locations/us-central1", service_id="my-run-service",
                              service=run_v2.Service(template=template)).result()
    foreign = _body("my-run-service", access={"invokers": [APP]})
    emulator.control.clear_calls()
    outcome = await reconcile_object(backend, foreign, DEFAULTS, now="t0")
    assert outcome.permanent and outcome.done and "not created by tfms" in outcome.permanent
    assert _writes(emulator) == 0 and not emulator.control.calls_to("GetIamPolicy")


async def test_apply_service_keeps_the_record_without_iam_step(backend: CloudRun, emulator: Emulator,
                                                              raw_client: run_v2.ServicesClient) -> None:
    """`tfms apply` runs the service step then the IAM step; a bare service pass alone never
    drops the record nor re-enables invoker IAM of a public service."""
    body = _body(access={"invokers": [APP]})
    await _until_done(backend, body)
    changed = base_object(access={"invokers": [APP]}, scaling={"maxInstances": 3})
    applied = await apply_service(backend, parse(changed))
    assert applied.plan.action.value == "update"
    assert raw_client.get_service(name=NAME).annotations["tfms.dev/invokers"] == f'["{APP}"]'


def test_policy_pb_round_trip_keeps_conditions() -> None:
    from tfms.backends.cloudrun import policy_from_pb, policy_to_pb

    pb = policy_pb2.Policy(version=3, etag=b"e1")
    pb.bindings.add(role=ADMIN, members=[OPS])
    conditional = pb.bindings.add(role=INVOKER, members=[TEAM])
    conditional.condition.expression = "request.time < timestamp('2030-01-01T00:00:00Z')"
    assert policy_to_pb(policy_from_pb(pb)) == pb


async def test_tfms_apply_grants_and_keeps_foreign_members(emulator: Emulator, raw_client: run_v2.ServicesClient,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI path (`tfms apply`) runs the same IAM step after the service step."""
    from tfms.cli.apply import apply_all

    svc = parse(base_object(access={"invokers": [APP]}))
    (result,) = await apply_all([svc], emulator.address, timeout=30, interval=0.05)
    assert result.state.phase is Phase.READY, result.state
    assert _invokers(raw_client) == [APP]
    _grant(raw_client, PUSH)
    (result,) = await apply_all([parse(base_object(access={"invokers": [TEAM]}))], emulator.address, timeout=30,
                                interval=0.05)
    assert _invokers(raw_client) == sorted([TEAM, PUSH])
    writes = _writes(emulator)
    await apply_all([parse(base_object(access={"invokers": [TEAM]}))], emulator.address, timeout=30, interval=0.05)
    assert _writes(emulator) == writes  # converged: zero writes
