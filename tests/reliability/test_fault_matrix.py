"""Fault matrix (issue 10, item 1): every Cloud Run call tfms makes x every fault class.

The real async `google-cloud-run` client talks to the emulator over loopback gRPC; the emulator
answers the chosen RPC with the injected status. Two callers are driven:

- the operator's service layer (`reconcile_object` / `finalize_object`) under the kopf handler's
  own retry policy (`OperatorConfig.retry_delay` after a transient error, `poll_seconds` while
  Cloud Run converges, stop on a permanent error and look again only on the resync timer);
- `tfms apply`'s `apply_all` (CI, no cluster), which retries inside one run.

Transient faults (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, DEADLINE_EXCEEDED, a failed
long-running operation, a very slow call or operation) must converge to Ready; permanent ones
(PERMISSION_DENIED, INVALID_ARGUMENT) must give a condition and an event that name the cause, and
cost a bounded number of Cloud Run calls per minute.

tfms never polls long-running operations (it reads convergence from the service itself), so the
GetOperation row checks that faults there change nothing and that GetOperation is never called.

Timings are scaled down (TFMS_RETRY_* in seconds, fractions here); TFMS_LONG_TESTS=1 runs the
permanent-error window for a full minute and the slow calls for several seconds.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from tests.conftest import base_object
from tests.reliability.sizes import pick
from tfms.api.defaults import Defaults
from tfms.api.validation import parse
from tfms.backends.cloudrun import CloudRun
from tfms.backends.errors import BackendError, Permanent
from tfms.cli.apply import apply_all
from tfms.emulator import Emulator, EmulatorConfig
from tfms.handlers.config import OperatorConfig
from tfms.plan.convergence import Phase
from tfms.reconcile.objects import Event, Outcome, finalize_object, reconcile_object
from tfms.reconcile.retry import Backoff, retry_transient

C = grpc.StatusCode
TRANSIENT = {
    "UNAVAILABLE": C.UNAVAILABLE,
    "RESOURCE_EXHAUSTED": C.RESOURCE_EXHAUSTED,
    "ABORTED": C.ABORTED,
    "DEADLINE_EXCEEDED": C.DEADLINE_EXCEEDED,
}
PERMANENT = {"PERMISSION_DENIED": C.PERMISSION_DENIED, "INVALID_ARGUMENT": C.INVALID_ARGUMENT}
LRO_FAILED, SLOW = "LRO_FAILED", "SLOW"
FAULTS = [*TRANSIENT, *PERMANENT, LRO_FAILED, SLOW]
METHODS = ["GetService", "CreateService", "UpdateService", "DeleteService", "GetIamPolicy", "SetIamPolicy",
           "GetOperation"]
LROS = {"CreateService", "UpdateService", "DeleteService", "GetOperation"}  # what a failed LRO applies to
REASON = {"PERMISSION_DENIED": "PermissionDenied", "INVALID_ARGUMENT": "InvalidArgument"}
FAULT_COUNT = 2  # transient faults in a row before the call succeeds
SLOW_SECONDS = pick(0.4, 4.0)  # a call (and the revision behind an operation) this slow still converges
WINDOW = pick(6.0, 60.0)  # how long an object sits under a permanent error in the calls-per-minute test

# The operator's retry policy, scaled: TFMS_RETRY_INITIAL_SECONDS / _MAX, TFMS_POLL_SECONDS, TFMS_RESYNC_SECONDS.
CONFIG = OperatorConfig.from_env({"TFMS_RETRY_INITIAL_SECONDS": "0.05", "TFMS_RETRY_MAX_SECONDS": "0.4",
                                  "TFMS_POLL_SECONDS": "0.05", "TFMS_RESYNC_SECONDS": "1"})


def _obj(**spec: Any) -> dict[str, Any]:
    """A spec whose invokers make every pass read (and the first one write) the IAM policy."""
    obj = base_object(access={"invokers": ["serviceAccount:app@example-project.iam.gserviceaccount.com"]}, **spec)
    obj["metadata"].update(generation=1, uid="0b6f4c1e-0000-4000-8000-000000000001")
    return obj


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


@dataclass
class Run:
    """What the operator policy did for one object."""

    outcome: Outcome | None = None
    events: list[Event] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)  # each transient retry's delay
    passes: int = 0


async def operate(api: CloudRun, obj: dict[str, Any], *, timeout: float = 20.0) -> Run:
    """The kopf `reconcile` handler's loop: a transient outcome is retried after
    `retry_delay(retry)`, a pending one after `poll_seconds`; done or permanent ends it."""
    run = Run()
    retry = 0
    deadline = time.monotonic() + timeout
    while True:
        outcome = await reconcile_object(api, obj, CONFIG.defaults, now=_now())
        obj["status"] = outcome.status
        run.outcome, run.passes = outcome, run.passes + 1
        run.events += outcome.events
        if outcome.permanent or (outcome.done and not outcome.transient):
            return run
        delay = CONFIG.retry_delay(retry) if outcome.transient else CONFIG.poll_seconds
        if outcome.transient:
            run.delays.append(delay)
        retry += 1
        assert time.monotonic() + delay < deadline, f"no convergence in {timeout}s: {outcome.status}"
        await asyncio.sleep(delay)  # the handler's retry delay, the behaviour under test


async def finalize(api: CloudRun, obj: dict[str, Any], *, timeout: float = 20.0) -> tuple[str, list[str]]:
    """The kopf `delete` handler's loop: any BackendError keeps the finalizer and retries later."""
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    for retry in range(1000):
        try:
            return await finalize_object(api, obj, CONFIG.defaults), errors
        except BackendError as exc:
            errors.append(f"{type(exc).__name__} {exc.code}: {exc}")
            delay = CONFIG.retry_delay(retry)
            if time.monotonic() + delay > deadline:
                return "", errors
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(ready_delay=getattr(request, "param", 0.0)))
    emu.start()
    yield emu
    emu.stop()


def arm(emulator: Emulator, method: str, fault: str, count: int = FAULT_COUNT) -> None:
    control = emulator.control
    if fault in TRANSIENT:
        control.fail_next(method, TRANSIENT[fault], count=count, message=f"injected {fault} on {method}")
    elif fault in PERMANENT:
        control.fail_next(method, PERMANENT[fault], count=10**6, message=f"injected {fault} on {method}")
    elif fault == LRO_FAILED:
        control.fail_next_operation(C.INTERNAL, f"injected failed operation ({method})")
    elif fault == SLOW:
        control.operation_polls(10**6)  # operations never report done; tfms must not wait on them
        control.delay(method, SLOW_SECONDS)


def cases() -> list[Any]:
    out = []
    for method in METHODS:
        for fault in FAULTS:
            if fault == LRO_FAILED and method not in LROS:
                continue  # Get/IAM calls are not long-running operations
            out.append(pytest.param(method, fault, id=f"{method}-{fault}"))
    return out


async def _converged(api: CloudRun, emulator: Emulator, obj: dict[str, Any]) -> Run:
    run = await operate(api, obj)
    assert run.outcome is not None and run.outcome.ready, run.outcome
    return run


def _service_name(obj: dict[str, Any]) -> str:
    return f"projects/example-project/locations/us-central1/services/{obj['metadata']['name']}"


@pytest.mark.parametrize("emulator", [0.0], indirect=True)
@pytest.mark.parametrize(("method", "fault"), cases())
async def test_operator_policy(api: CloudRun, emulator: Emulator, method: str, fault: str) -> None:
    obj = _obj()
    if method == "UpdateService":  # armed for the template update of a spec change
        await _converged(api, emulator, obj)
        obj["spec"]["runtime"]["env"] = [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}]
        obj["metadata"]["generation"] = 2
    if method == "DeleteService":
        await _converged(api, emulator, obj)
    if fault == SLOW and method == "GetOperation":
        emulator.control.operation_polls(10**6)
    emulator.control.clear_calls()
    arm(emulator, method, fault)

    if method == "DeleteService":
        await _check_delete(api, emulator, obj, fault)
        return
    started = time.monotonic()
    run = await operate(api, obj)
    assert run.outcome is not None
    calls = emulator.control.calls_to(method) if method != "GetOperation" else []
    assert emulator.control.calls_to("GetOperation") == []  # tfms reads services, never waits on an LRO
    if fault in PERMANENT and method != "GetOperation":
        ready = _ready(run.outcome.status)
        assert ready["status"] == "False" and ready["reason"] == REASON[fault], ready
        assert f"injected {fault} on {method}" in ready["message"]
        warning = [e for e in run.events if e.type == "Warning" and e.reason == REASON[fault]]
        assert warning and f"injected {fault} on {method}" in warning[0].message
        assert run.outcome.done and run.outcome.permanent
        assert len(calls) == 1, f"a permanent {fault} was retried by the pass: {len(calls)} calls"
        return
    assert run.outcome.ready, run.outcome.status
    assert _ready(run.outcome.status)["reason"] == "Ready"
    assert run.outcome.status["observedGeneration"] == obj["metadata"]["generation"]
    if fault in TRANSIENT and method != "GetOperation":
        assert len(calls) >= FAULT_COUNT + 1  # retried until it went through
        faulted = [e for e in run.events if e.type == "Warning"]
        assert not faulted, faulted  # a transient fault is not an event users must act on
        # google-cloud-run retries GetService on UNAVAILABLE itself (api_core Retry: exponential, jittered);
        # every other transient fault reaches the handler, which retries after its jittered backoff.
        # SetIamPolicy's ABORTED is a stale etag: tfms reads the policy again and retries within the pass.
        client_retried = (method, fault) in {("GetService", "UNAVAILABLE"), ("SetIamPolicy", "ABORTED")}
        assert client_retried or len(run.delays) >= 1
        assert all(0 < d <= CONFIG.retry_max for d in run.delays)
    if fault == SLOW and method != "GetOperation":
        assert time.monotonic() - started >= SLOW_SECONDS
    if fault == LRO_FAILED:  # the failed operation changed nothing, so the write was made again
        written = "CreateService" if method == "GetOperation" else method
        assert len(emulator.control.calls_to(written)) >= 2
    live = await api.get_service(_service_name(obj))
    assert live is not None and live["latestReadyRevision"].endswith(obj["status"]["desiredRevision"])
    policy = await api.get_iam_policy(_service_name(obj))
    members = {m for b in policy.bindings if b.role == "roles/run.invoker" for m in b.members}
    assert members == {"serviceAccount:app@example-project.iam.gserviceaccount.com"}


async def _check_delete(api: CloudRun, emulator: Emulator, obj: dict[str, Any], fault: str) -> None:
    message, errors = await finalize(api, obj, timeout=pick(3.0, 10.0))
    calls = emulator.control.calls_to("DeleteService")
    live = await api.get_service(_service_name(obj))
    if fault in PERMANENT:
        assert message == "" and live is not None  # the finalizer stays; the service is not orphaned
        assert errors and all(REASON[fault] in e and f"injected {fault} on DeleteService" in e for e in errors)
        # retried with the handler's exponential backoff (0.05 s doubling to 0.4 s here), not in a loop
        assert len(calls) == len(errors) <= _most_attempts(pick(3.0, 10.0)), len(errors)
        return
    assert live is None, f"{fault}: finalizer released ({message!r}) but the service still exists"
    assert message.startswith(("deleted", "Cloud Run service")), message
    if fault in TRANSIENT:
        assert len(calls) == FAULT_COUNT + 1 and len(errors) == FAULT_COUNT


def _most_attempts(window: float) -> int:
    """Attempts in `window` seconds if every jittered delay drew its floor (half the step)."""
    elapsed, attempts = 0.0, 1
    while True:
        elapsed += min(CONFIG.retry_max, CONFIG.retry_initial * 2 ** (attempts - 1)) / 2
        if elapsed > window:
            return attempts
        attempts += 1


@pytest.mark.parametrize("emulator", [0.0], indirect=True)
@pytest.mark.parametrize(("method", "fault"), [c for c in cases() if c.values[0] != "DeleteService"])
async def test_cli_apply(emulator: Emulator, method: str, fault: str) -> None:
    """`tfms apply` (CI, no cluster): one run survives transient faults and reports permanent ones."""
    obj = _obj()
    svc = parse(obj, Defaults())
    if method == "UpdateService":
        first = await apply_all([svc], emulator.address, timeout=10, interval=0.05, stream=io.StringIO())
        assert first[0].state.phase is Phase.READY
        obj["spec"]["runtime"]["env"] = [{"name": "A", "value": "1"}]
        svc = parse(obj, Defaults())
    if fault == SLOW and method == "GetOperation":
        emulator.control.operation_polls(10**6)
    emulator.control.clear_calls()
    arm(emulator, method, fault)
    results = await apply_all([svc], emulator.address, timeout=20, interval=0.05, stream=io.StringIO())
    state = results[0].state
    if fault in PERMANENT and method != "GetOperation":
        assert state.phase is Phase.FAILED and f"injected {fault} on {method}" in state.message, state
        assert len(emulator.control.calls_to(method)) == 1
        return
    assert state.phase is Phase.READY, state
    assert emulator.control.calls_to("GetOperation") == []


# -- permanent errors cost a bounded number of calls ------------------------------------------------------
async def operate_for(api: CloudRun, obj: dict[str, Any], window: float, resync: float) -> int:
    """The operator for `window` seconds: the reconcile handler until it gives up (permanent), then
    the resync timer every `resync` seconds, as kopf runs it. Returns the number of passes."""
    deadline = time.monotonic() + window
    run = await operate(api, obj, timeout=window)
    passes = run.passes
    while time.monotonic() + resync < deadline:
        await asyncio.sleep(resync)  # kopf's timer interval (TFMS_RESYNC_SECONDS), the behaviour under test
        outcome = await reconcile_object(api, obj, CONFIG.defaults, now=_now())
        obj["status"] = outcome.status
        passes += 1
    return passes


@pytest.mark.parametrize("emulator", [0.0], indirect=True)
@pytest.mark.parametrize("fault", list(PERMANENT))
@pytest.mark.parametrize("method", ["CreateService", "SetIamPolicy"])
async def test_permanent_error_calls_per_minute_are_bounded(api: CloudRun, emulator: Emulator, method: str,
                                                            fault: str) -> None:
    resync = 0.5  # TFMS_RESYNC_SECONDS scaled down 120x from its default of 60
    obj = _obj()
    emulator.control.clear_calls()
    arm(emulator, method, fault)
    started = time.monotonic()
    passes = await operate_for(api, obj, WINDOW, resync)
    elapsed = time.monotonic() - started
    calls = len(emulator.control.calls)
    per_pass = calls / passes
    # One handler pass, then one pass per resync: never more than window/resync + 1 passes ...
    assert passes <= elapsed / resync + 1
    # ... each a handful of calls (Get, the refused write, the IAM read when it gets that far).
    assert per_pass <= 4, emulator.control.calls
    per_minute_at_default = per_pass * 60 / 60.0  # one pass per TFMS_RESYNC_SECONDS=60
    per_minute_scaled = calls / elapsed * 60
    assert per_minute_scaled <= 4 * (60 / resync + 1)
    print(f"\n{method} {fault}: {calls} Cloud Run calls in {elapsed:.1f}s over {passes} passes "
          f"({per_minute_scaled:.0f}/min at resync {resync}s; {per_minute_at_default:.1f}/min at the default 60s)")


# -- jitter -------------------------------------------------------------------------------------------------
def test_backoff_has_full_jitter() -> None:
    backoff = Backoff(attempts=6, initial=0.5, maximum=30.0)
    for attempt in range(6):
        cap = min(30.0, 0.5 * 2**attempt)
        draws = [backoff.delay(attempt) for _ in range(400)]
        assert all(0 <= d <= cap for d in draws)
        assert len(set(draws)) > 350  # random, not a fixed ladder
        assert min(draws) < cap * 0.1 and max(draws) > cap * 0.9  # spread over the whole [0, cap]


def test_operator_retry_delay_is_exponential_capped_and_jittered() -> None:
    config = OperatorConfig.from_env({"TFMS_RETRY_INITIAL_SECONDS": "2", "TFMS_RETRY_MAX_SECONDS": "300"})
    rng = random.Random(7)
    for attempt in (0, 1, 4, 10, 1000):
        cap = min(300.0, 2.0 * 2**min(attempt, 64))
        draws = [config.retry_delay(attempt, rng) for _ in range(400)]
        assert all(cap / 2 <= d <= cap for d in draws)  # a floor: a permanent outage stays cheap
        assert len(set(draws)) > 350 and max(draws) - min(draws) > cap * 0.4


async def test_retry_transient_retries_only_transient_with_jittered_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    from tfms.backends.errors import Transient

    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", record)
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 5:
            raise Transient("unavailable", "ServiceUnavailable")
        return "ok"

    assert await retry_transient(flaky, Backoff(attempts=6, initial=1.0, maximum=8.0)) == "ok"
    assert attempts == 5 and len(slept) == 4
    assert all(0 <= s <= min(8.0, 2.0**i) for i, s in enumerate(slept))

    async def refused() -> str:
        nonlocal attempts
        attempts += 1
        raise Permanent("denied", "PermissionDenied")

    attempts = 0
    with pytest.raises(Permanent):
        await retry_transient(refused, Backoff(attempts=6))
    assert attempts == 1


def test_matrix_covers_every_call_and_fault() -> None:
    combos = {(p.values[0], p.values[1]) for p in cases()}
    assert {m for m, _ in combos} == set(METHODS) and {f for _, f in combos} == set(FAULTS)
    assert len(combos) == len(METHODS) * len(FAULTS) - 3  # no failed LRO for Get/IAM reads and writes
