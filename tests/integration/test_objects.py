"""The operator's service layer against the emulator: status, events, retry classes, deletion."""

from __future__ import annotations

import copy
from typing import Any

import grpc

from tests.conftest import base_object
from tfms.api.defaults import Defaults
from tfms.backends.cloudrun import CloudRun
from tfms.emulator import Emulator
from tfms.reconcile.objects import Outcome, finalize_object, reconcile_object

DEFAULTS = Defaults()
WRITES = {"CreateService", "UpdateService", "DeleteService", "SetIamPolicy"}


def _body(**spec: Any) -> dict[str, Any]:
    obj = base_object(**spec)
    obj["metadata"].update(generation=1, uid="0b0e6b2e-1111-4c1a-9a55-000000000001")
    obj["status"] = {}
    return obj


async def _until_done(api: CloudRun, body: dict[str, Any], now: str = "2026-12-03T00:00:00Z") -> Outcome:
    for _ in range(200):
        outcome = await reconcile_object(api, body, DEFAULTS, now=now)
        body["status"] = outcome.status
        if outcome.done or outcome.permanent:
            return outcome
    raise AssertionError(f"not done: {outcome}")


def _cond(outcome: Outcome, kind: str) -> dict[str, Any]:
    return next(c for c in outcome.status["conditions"] if c["type"] == kind)


def _writes(emulator: Emulator) -> int:
    return sum(1 for c in emulator.control.calls if c.method in WRITES)


async def test_create_to_ready_with_status_and_events(backend: CloudRun, emulator: Emulator) -> None:
    body = _body(traffic=[{"percent": 100, "tag": "stable"}])
    first = await reconcile_object(backend, body, DEFAULTS, now="t0")
    assert [e.reason for e in first.events] == ["Created"] or "Ready" in [e.reason for e in first.events]
    body["status"] = first.status
    done = await _until_done(backend, body)
    assert done.ready
    status = done.status
    assert status["observedGeneration"] == 1
    assert status["url"].startswith("https://fraud-scorer-")
    assert status["latestReadyRevision"] == status["desiredRevision"]
    assert status["traffic"] == [{"revision": status["latestReadyRevision"], "percent": 100, "latestRevision": True,
                                  "tag": "stable", "url": status["traffic"][0]["url"]}]
    assert status["traffic"][0]["url"].startswith("https://stable---fraud-scorer-")
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Validated": "True", "ServiceReady": "True", "TrafficReady": "True"}
    live = emulator.state.services[status["service"]]
    assert live is not None


async def test_converged_object_writes_nothing_and_status_is_stable(backend: CloudRun, emulator: Emulator) -> None:
    """B-035: no spec change -> zero Cloud Run writes and an identical status (same timestamps)."""
    body = _body()
    done = await _until_done(backend, body, now="t0")
    writes = _writes(emulator)
    again = await reconcile_object(backend, body, DEFAULTS, now="t1")
    assert again.status == done.status and again.events == [] and again.done
    assert _writes(emulator) == writes


async def test_invalid_spec_is_permanent_and_calls_nothing(backend: CloudRun, emulator: Emulator) -> None:
    body = _body(traffic=[{"percent": 10}])
    calls = len(emulator.control.calls)
    outcome = await reconcile_object(backend, body, DEFAULTS, now="t0")
    assert outcome.permanent and outcome.done and not outcome.transient
    assert _cond(outcome, "Ready")["reason"] == "InvalidSpec"
    assert "spec.traffic: percentages must sum to exactly 100" in _cond(outcome, "Validated")["message"]
    assert len(emulator.control.calls) == calls


async def test_transient_error_retries_and_permanent_error_stops(backend: CloudRun, emulator: Emulator) -> None:
    """B-039: 503 -> retry; 400/403 -> one attempt, Ready=False with the reason."""
    body = _body()
    emulator.control.fail_next("CreateService", grpc.StatusCode.UNAVAILABLE, count=1)
    outcome = await reconcile_object(backend, body, DEFAULTS, now="t0")
    assert outcome.transient and not outcome.permanent
    assert _cond(outcome, "Ready") == {**_cond(outcome, "Ready"), "status": "False", "reason": "CloudRunUnavailable"}

    emulator.control.fail_next("CreateService", grpc.StatusCode.PERMISSION_DENIED, count=1,
                               message="Permission 'run.services.create' denied")
    creates = sum(1 for c in emulator.control.calls if c.method == "CreateService")
    outcome = await reconcile_object(backend, body, DEFAULTS, now="t0")
    assert outcome.permanent and "run.services.create" in outcome.permanent
    assert _cond(outcome, "Ready")["reason"] == "PermissionDenied"
    assert sum(1 for c in emulator.control.calls if c.method == "CreateService") == creates + 1


async def test_failed_revision_is_reported_once_and_traffic_kept(backend: CloudRun, emulator: Emulator) -> None:
    body = _body()
    ok = await _until_done(backend, body)
    emulator.control.fail_next_revision("CONTAINER_MISSING", "Image 'tensorflow/serving:9.9.9' not found.")
    body["spec"]["runtime"]["image"] = "tensorflow/serving:9.9.9"
    body["metadata"]["generation"] = 2
    failed = await _until_done(backend, body)
    assert failed.permanent and not failed.ready
    assert _cond(failed, "Ready")["status"] == "False"
    assert "not found" in _cond(failed, "Ready")["message"]
    assert failed.status["traffic"] == ok.status["traffic"]  # still on the last serving revision
    assert failed.status["latestReadyRevision"] == ok.status["latestReadyRevision"]


async def test_drift_is_corrected_with_an_event(backend: CloudRun, emulator: Emulator,
                                                raw_client: Any) -> None:
    body = _body()
    done = await _until_done(backend, body)
    svc = raw_client.get_service(name=done.status["service"])
    svc.traffic[0].tag = "hacked"
    raw_client.update_service(service=svc)
    outcome = await reconcile_object(backend, body, DEFAULTS, now="t1")
    assert [e.reason for e in outcome.events][:1] == ["DriftCorrected"]
    assert "traffic" in outcome.events[0].message


async def test_delete_owned_service_and_already_gone(backend: CloudRun, emulator: Emulator) -> None:
    body = _body()
    await _until_done(backend, body)
    message = await finalize_object(backend, body, DEFAULTS)
    assert message.startswith("deleted Cloud Run service")
    assert not emulator.state.services
    assert "already gone" in await finalize_object(backend, body, DEFAULTS)


async def test_abandon_strips_ownership_and_keeps_service(backend: CloudRun, emulator: Emulator) -> None:
    body = _body(deletionPolicy="Abandon", labels={"team": "ml"})
    done = await _until_done(backend, body)
    revision = done.status["latestReadyRevision"]
    message = await finalize_object(backend, body, DEFAULTS)
    assert message.startswith("abandoned")
    live = await backend.get_service(done.status["service"])
    assert live is not None
    assert live["labels"] == {"team": "ml"}
    assert live["latestReadyRevision"].endswith(revision)


async def test_delete_never_touches_a_service_it_does_not_own(backend: CloudRun, emulator: Emulator) -> None:
    """B-040: a pre-existing service with the same name survives the object's deletion."""
    body = _body()
    await _until_done(backend, body)
    impostor = copy.deepcopy(body)
    impostor["metadata"]["uid"] = "another-uid"
    message = await finalize_object(backend, impostor, DEFAULTS)
    assert "does not own" in message
    assert emulator.state.services


async def test_delete_failure_keeps_finalizer(backend: CloudRun, emulator: Emulator) -> None:
    """B-037: a failed delete raises, so the handler keeps the finalizer and retries."""
    import pytest

    from tfms.backends.errors import BackendError

    body = _body()
    await _until_done(backend, body)
    emulator.control.fail_next("DeleteService", grpc.StatusCode.PERMISSION_DENIED, count=1)
    with pytest.raises(BackendError):
        await finalize_object(backend, body, DEFAULTS)
    assert emulator.state.services
    assert (await finalize_object(backend, body, DEFAULTS)).startswith("deleted")
