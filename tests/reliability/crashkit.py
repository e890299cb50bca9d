"""Kill the reconciler at any Cloud Run call and start a fresh one: the crash-restart harness.

`CrashingCloudRun` wraps the real backend (the real google-cloud-run client against the
emulator) and raises `Crash` — a BaseException, like the task cancellation a dying operator
sees, so no `except Exception` in the product can swallow it — before or after the Nth call.
It also checks, at the moment of every write, that no revision named with traffic > 0 is
unready in the emulator (B-021, as the operator sends it).

`Lifecycle` drives one object through phases (create, update, canary, rollback, delete) the
way the operator does: one pass at a time, status carried between passes; a crash loses that
pass's status patch (or, when asked, the whole status) and the next pass starts from a new
`RolloutContext`. The test then checks the end state against the emulator's own records.
"""

from __future__ import annotations

import asyncio
import copy
import random
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.cloud import run_v2

from tfms.api.defaults import Defaults
from tfms.api.validation import parse
from tfms.backends.cloudrun import CloudRun
from tfms.emulator import Emulator
from tfms.plan.iam import Policy
from tfms.plan.rollout import Action
from tfms.plan.traffic import REVISION
from tfms.reconcile.objects import Outcome, finalize_object, reconcile_object
from tfms.reconcile.rollout import RolloutContext
from tfms.render.cloudrun import render_service

T = TypeVar("T")
Doc = dict[str, Any]
DEFAULTS = Defaults()
READY_STATE = run_v2.Condition.State.CONDITION_SUCCEEDED
PASS_LIMIT = 300  # passes per phase before the harness calls it a livelock


class Crash(BaseException):
    """The reconciler process died at this point."""


@dataclass
class CrashPlan:
    """Which calls (0-based, over the whole lifecycle) crash, and on which side of the call."""

    at: frozenset[int] = frozenset()
    after: bool = False  # True: the call reached Cloud Run (its effect happened), then the process died
    calls: int = 0
    crashed: list[str] = field(default_factory=list)

    def before(self, what: str) -> bool:
        """Counts the call; raises when it crashes before being sent; True when it crashes after."""
        index = self.calls
        self.calls += 1
        if index in self.at and not self.after:
            self.crashed.append(f"before #{index} {what}")
            raise Crash(what)
        if index in self.at:
            self.crashed.append(f"after #{index} {what}")
            return True
        return False


class CrashingCloudRun:
    """The backend of one reconciler 'process'; crashes where the plan says."""

    def __init__(self, inner: CloudRun, emulator: Emulator, plan: CrashPlan) -> None:
        self._inner, self._emulator, self.plan = inner, emulator, plan
        self.violations: list[str] = []

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        crash_after = self.plan.before(what)
        result = await fn()
        if crash_after:
            raise Crash(what)
        return result

    def _check_traffic(self, name: str, body: Mapping[str, Any]) -> None:
        """Every pinned revision given traffic must be Ready in Cloud Run right now."""
        parent = name.split("/services/")[0] if "/services/" in name else name
        service = name if "/services/" in name else ""
        revisions = self._emulator.state.revisions
        for target in body.get("traffic") or []:
            if target.get("type") != REVISION or not int(target.get("percent", 0) or 0):
                continue
            full = f"{service or parent}/revisions/{target['revision']}"
            rev = revisions.get(full)
            ready = rev is not None and any(c.type_ == "Ready" and c.state == READY_STATE for c in rev.conditions)
            if not ready:
                self.violations.append(f"write gave {target['percent']}% to unready {target['revision']}")

    async def get_service(self, name: str) -> Doc | None:
        return await self._call(f"GetService {name}", lambda: self._inner.get_service(name))

    async def create_service(self, parent: str, service_id: str, body: Doc) -> str:
        # A first deploy names its own new revision (nothing else exists to serve meanwhile);
        # Cloud Run routes to it only once it is Ready, which the history check verifies.
        first = str((body.get("template") or {}).get("revision", ""))
        self._check_traffic(f"{parent}/services/{service_id}",
                            {"traffic": [t for t in body.get("traffic") or [] if t.get("revision") != first]})
        return await self._call(f"CreateService {service_id}",
                                lambda: self._inner.create_service(parent, service_id, body))

    async def update_service(self, name: str, body: Doc, etag: str = "") -> str:
        self._check_traffic(name, body)
        return await self._call(f"UpdateService {name}", lambda: self._inner.update_service(name, body, etag))

    async def update_service_fields(self, name: str, fields: Doc, etag: str = "") -> str:
        return await self._call(f"UpdateService(fields) {name}",
                                lambda: self._inner.update_service_fields(name, fields, etag))

    async def set_labels(self, name: str, labels: dict[str, str], etag: str = "") -> None:
        await self._call(f"UpdateService(labels) {name}", lambda: self._inner.set_labels(name, labels, etag))

    async def delete_service(self, name: str) -> None:
        await self._call(f"DeleteService {name}", lambda: self._inner.delete_service(name))

    async def get_iam_policy(self, resource: str) -> Policy:
        return await self._call(f"GetIamPolicy {resource}", lambda: self._inner.get_iam_policy(resource))

    async def set_iam_policy(self, resource: str, policy: Policy) -> Policy:
        return await self._call(f"SetIamPolicy {resource}", lambda: self._inner.set_iam_policy(resource, policy))


@dataclass(frozen=True)
class Step:
    """One phase of an object's life: the spec the user holds now, an on-demand action, and
    when the phase is over (read from the Cloud Run service and the last outcome)."""

    name: str
    spec: Doc
    done: Callable[[Outcome, Doc], bool]
    action: Action | None = None


def body_for(name: str, spec: Doc, generation: int, uid: str) -> Doc:
    return {"apiVersion": "serving.tfms.dev/v1alpha1", "kind": "TFModelService",
            "metadata": {"name": name, "namespace": "crash", "generation": generation, "uid": uid},
            "spec": copy.deepcopy(spec), "status": {}}


def revision_of(name: str, spec: Doc) -> str:
    return render_service(parse(body_for(name, spec, 1, "x"), DEFAULTS)).revision


def service_name(name: str) -> str:
    return f"projects/example-project/locations/us-central1/services/{name}"


def live_split(emulator: Emulator, name: str) -> dict[str, int]:
    """Where Cloud Run routes requests now (traffic statuses), by short revision name."""
    svc = emulator.state.services.get(service_name(name))
    assert svc is not None, f"{name}: no Cloud Run service"
    latest = svc.latest_ready_revision  # a LATEST target's status names no revision
    return {(t.revision or latest).rsplit("/", 1)[-1]: t.percent for t in svc.traffic_statuses if t.percent}


def revisions(emulator: Emulator, name: str) -> list[str]:
    prefix = service_name(name) + "/revisions/"
    return sorted(r.rsplit("/", 1)[-1] for r in emulator.state.revisions if r.startswith(prefix))


def unready_traffic_in_history(emulator: Emulator, name: str) -> list[str]:
    """Every recorded moment at which Cloud Run routed traffic to a revision not Ready then."""
    full = service_name(name)
    changes = emulator._plane.history.changes(full) or []  # what GET /_emulator/history serves
    ready_at: dict[str, float] = {}
    for rname, rev in emulator.state.revisions.items():
        if rname.startswith(full + "/revisions/"):
            for cond in rev.conditions:
                if cond.type_ == "Ready" and cond.state == READY_STATE:
                    ready_at[rname.rsplit("/", 1)[-1]] = cond.last_transition_time.timestamp()
    bad = []
    for change in changes:
        for target in change["traffic"]:
            short = str(target["revision"] or change["latestReadyRevision"]).rsplit("/", 1)[-1]
            if target["percent"] > 0 and not (short in ready_at and ready_at[short] <= change["t"] + 0.001):
                bad.append(f"t={change['t']}: {target['percent']}% on {short or '(latest)'} (ready at "
                           f"{ready_at.get(short)})")
    return bad


@dataclass
class Lifecycle:
    """One object driven through `steps` by a reconciler that crashes per `plan`."""

    emulator: Emulator
    backend: CloudRun
    name: str
    plan: CrashPlan
    lose_status: bool = False  # a crash also loses the object's status (a restored backup, say)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    clock: float = 1_800_000_000.0
    passes: int = 0
    restarts: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = CrashingCloudRun(self.backend, self.emulator, self.plan)
        self.uid = f"00000000-0000-4000-8000-{zlib.crc32(self.name.encode()):012d}"

    def _restart(self, body: Doc, previous: Doc) -> None:
        self.restarts += 1
        body["status"] = {} if self.lose_status else previous

    async def run(self, steps: list[Step], on_step: Callable[[Step], None] | None = None) -> Outcome | None:
        generation, spec, last = 0, None, None
        body: Doc = {}
        for step in steps:
            if step.spec != spec:
                generation += 1
                spec = step.spec
                status = body.get("status", {})
                body = body_for(self.name, spec, generation, self.uid)
                body["status"] = status
            pending = step.action
            for _ in range(PASS_LIMIT):
                previous = body["status"]
                ctx = RolloutContext(action=pending, now=self.clock)
                self.passes += 1
                try:
                    last = await reconcile_object(self.api, body, DEFAULTS, now="2026-12-04T00:00:00Z",
                                                  rollout=ctx, iam=self.api)
                except Crash:
                    self._restart(body, previous)
                    continue
                pending = None  # the action annotation is removed with the status patch of that pass
                self.outcomes.append(last)
                body["status"] = last.status
                if step.done(last, body["status"]):
                    break
                if last.permanent:
                    raise AssertionError(f"{self.name}: {step.name} stopped: {last.permanent}; "
                                         f"crashes {self.plan.crashed}")
                await self._wait(last)
            else:
                raise AssertionError(f"{self.name}: {step.name} not done after {PASS_LIMIT} passes; "
                                     f"last {last}; crashes {self.plan.crashed}")
            if on_step is not None:
                on_step(step)
        return last

    async def _wait(self, outcome: Outcome) -> None:
        """Between passes: the rollout's clock moves on, and Cloud Run gets a moment to settle."""
        self.clock += outcome.wait if outcome.wait else 1.0
        full = service_name(self.name)

        def settled(state: Any) -> bool:
            svc = state.services.get(full)
            return svc is None or not svc.reconciling

        await asyncio.to_thread(self.emulator.wait_until, settled, 5.0)

    async def delete(self, body_spec: Doc) -> str:
        body = body_for(self.name, body_spec, 1, self.uid)
        body["status"] = {"service": service_name(self.name)}
        for _ in range(PASS_LIMIT):
            try:
                return await finalize_object(self.api, body, DEFAULTS)
            except Crash:
                self.restarts += 1
        raise AssertionError(f"{self.name}: delete not done")
