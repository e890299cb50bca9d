"""Canary rollouts as a pure state machine over Cloud Run traffic.

The whole state of a rollout travels with the Cloud Run service, in one service-level
annotation written in the same call that moves traffic, so `tfms apply`, the operator and
`tfms rollout` all resume it from Cloud Run alone (a lost cluster status loses nothing), and
the user's spec never changes during a rollout. Safety rules:

- traffic only moves to a revision Cloud Run reports Ready (B-021); a candidate that fails
  never gets traffic and the rollout stops with Cloud Run's reason;
- the stable revision is tracked explicitly, never inferred from created/ready names (B-020);
- a new spec during a rollout starts over from the stable revision: no leftover targets;
- after a rollout only `stable` (and `prev`, at 0%) remain; during one, `stable` + `canary`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from tfms.api.model import RolloutSpec
from tfms.plan.analysis import Judgement, Verdict, WindowStats, judge
from tfms.plan.traffic import REVISION

ANNOTATION = "tfms.dev/rollout"
STABLE_TAG, CANARY_TAG, PREV_TAG = "stable", "canary", "prev"
GATE_MESSAGE = "waiting for approval"


class Phase(StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # the candidate never became ready
    ROLLED_BACK = "RolledBack"  # analysis failed, or a rollback was asked for
    ABORTED = "Aborted"

    @property
    def active(self) -> bool:
        return self in (Phase.PROGRESSING, Phase.PAUSED)


class Action(StrEnum):
    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class RolloutState:
    revision: str  # the revision this rollout brings in (the spec's revision)
    stable: str  # the revision that served before it; "" on a first deploy
    phase: Phase
    step: int = -1  # index into the steps; -1 while waiting for the candidate to be Ready
    weight: int = 0  # the candidate's current percent
    step_started: float = 0.0  # Unix time the current step (and its analysis window) began
    failures: int = 0  # failed analysis checks so far
    message: str = ""
    analysis: dict[str, Any] = field(default_factory=dict)  # the last figures: requests, errorRate, p99Ms
    approved: int = -1  # with manual gates: the highest step a person has approved

    def to_json(self) -> str:
        data = asdict(self)
        data["phase"] = self.phase.value
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RolloutState | None:
        """None for anything unreadable: a hand-edited annotation must not wedge the rollout."""
        try:
            data = json.loads(text)
            return cls(
                revision=str(data["revision"]), stable=str(data.get("stable", "")), phase=Phase(data["phase"]),
                step=int(data.get("step", -1)), weight=int(data.get("weight", 0)),
                step_started=float(data.get("step_started", 0.0)), failures=int(data.get("failures", 0)),
                message=str(data.get("message", "")), analysis=dict(data.get("analysis") or {}),
                approved=int(data.get("approved", -1)),
            )
        except (ValueError, KeyError, TypeError):
            return None


def state_of(live: Mapping[str, Any] | None) -> RolloutState | None:
    annotations = (live or {}).get("annotations") or {}
    text = annotations.get(ANNOTATION)
    return RolloutState.from_json(text) if isinstance(text, str) else None


@dataclass(frozen=True)
class Decision:
    traffic: list[dict[str, Any]]
    state: RolloutState
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (Normal|Warning, reason, message)
    wait: float | None = None  # seconds until the next decision is due; None: nothing pending
    metrics_window: tuple[str, float] | None = None  # (revision, start): what analysis wants to read
    # What this pass saw (live figures, message) when nothing stored changes: shown in status and
    # on the terminal, never written, so holding a step costs no Cloud Run write.
    observed: RolloutState | None = None

    @property
    def shown(self) -> RolloutState:
        return self.observed or self.state


def _target(revision: str, percent: int, tag: str) -> dict[str, Any]:
    return {"type": REVISION, "revision": revision, "percent": percent, "tag": tag}


def traffic_for(state: RolloutState) -> list[dict[str, Any]]:
    """The Cloud Run traffic a state stands for."""
    r, s = state.revision, state.stable
    if state.phase.active and s:
        return [_target(s, 100 - state.weight, STABLE_TAG), _target(r, state.weight, CANARY_TAG)]
    if state.phase in (Phase.FAILED, Phase.ABORTED, Phase.ROLLED_BACK) and s:
        return [_target(s, 100, STABLE_TAG)] + ([_target(r, 0, PREV_TAG)] if state.phase is Phase.ROLLED_BACK
                                                and _promoted_before(state) else [])
    out = [_target(r, 100, STABLE_TAG)]
    if s and s != r:
        out.append(_target(s, 0, PREV_TAG))
    return out


def _promoted_before(state: RolloutState) -> bool:
    """A rollback after promotion keeps the rolled-back revision reachable as `prev`."""
    return state.message.startswith("rolled back after promotion")


def _ready(live: Mapping[str, Any], revision: str) -> bool:
    short = str(live.get("latestReadyRevision", "")).rsplit("/", 1)[-1]
    return short == revision


def _failed(live: Mapping[str, Any], revision: str) -> str:
    """Cloud Run's reason when the candidate failed to become ready, else ""."""
    created = str(live.get("latestCreatedRevision", "")).rsplit("/", 1)[-1]
    terminal = live.get("terminalCondition") or {}
    if created == revision and not live.get("reconciling") and terminal.get("state") == "CONDITION_FAILED":
        return str(terminal.get("message") or terminal.get("reason") or "revision failed")
    return ""


def _serving(live: Mapping[str, Any] | None) -> str:
    """The revision serving the most traffic now: the stable one when no rollout state exists."""
    best, best_percent = "", -1
    for t in (live or {}).get("trafficStatuses", []) or []:
        revision = str(t.get("revision", "")).rsplit("/", 1)[-1] or str(
            (live or {}).get("latestReadyRevision", "")).rsplit("/", 1)[-1]
        percent = int(t.get("percent", 0) or 0)
        if percent > best_percent:
            best, best_percent = revision, percent
    return best


def apply_action(state: RolloutState, action: Action,
                 live: Mapping[str, Any] | None = None) -> tuple[RolloutState, tuple[str, str, str]]:
    """An on-demand action; raises ValueError when it makes no sense in this phase.

    `live` is the Cloud Run service as read now: promote checks the candidate against it, since
    the stored state may not yet know that Cloud Run failed the revision (B-021 holds for people too).
    """
    failed = _failed(live or {}, state.revision) if state.phase.active else ""
    if failed and action in (Action.PROMOTE, Action.PAUSE, Action.RESUME):
        raise ValueError(f"{state.revision} did not become ready ({failed}); "
                         + ("promote would send all traffic to a failed revision" if action is Action.PROMOTE
                            else f"there is nothing to {action.value}")
                         + ": abort, or apply a fixed spec")
    if action is Action.PROMOTE:
        if not state.phase.active:
            raise ValueError(f"nothing to promote: the rollout of {state.revision} is {state.phase.value}")
        if not _ready(live or {}, state.revision):
            raise ValueError(f"{state.revision} is not Ready yet: promote once Cloud Run reports it Ready "
                             "(tfms rollout status)")
        return (replace(state, phase=Phase.SUCCEEDED, weight=100, message="promoted on demand"),
                ("Normal", "Promoted", f"{state.revision} promoted on demand: 100% of traffic"))
    if action is Action.PAUSE:
        if state.phase is not Phase.PROGRESSING:
            raise ValueError(f"only a progressing rollout can be paused (it is {state.phase.value})")
        return replace(state, phase=Phase.PAUSED, message="paused on demand"), (
            "Normal", "RolloutPaused", f"rollout of {state.revision} paused at {state.weight}%")
    if action is Action.RESUME:
        if state.phase is not Phase.PAUSED:
            raise ValueError(f"only a paused rollout can be resumed (it is {state.phase.value})")
        # Resuming at a gate approves the step it was waiting for; the next pass takes it at once.
        gate = state.message.startswith(GATE_MESSAGE)
        return replace(state, phase=Phase.PROGRESSING, message="resumed", step_started=0.0,
                       approved=state.step + 1 if gate else state.approved), (
            "Normal", "RolloutResumed", f"rollout of {state.revision} resumed at {state.weight}%"
            + (" (step approved)" if gate else ""))
    if action is Action.ABORT:
        if not state.phase.active:
            raise ValueError(f"nothing to abort: the rollout of {state.revision} is {state.phase.value}")
        return replace(state, phase=Phase.ABORTED, weight=0, message="aborted on demand"), (
            "Warning", "RolloutAborted", f"rollout of {state.revision} aborted: 100% back to {state.stable}")
    if action is Action.ROLLBACK:
        if state.phase.active:
            return replace(state, phase=Phase.ROLLED_BACK, weight=0, message="rolled back on demand"), (
                "Warning", "RolledBack", f"{state.revision} rolled back on demand: 100% to {state.stable}")
        if state.phase is Phase.SUCCEEDED and state.stable and state.stable != state.revision:
            back = RolloutState(revision=state.revision, stable=state.stable, phase=Phase.ROLLED_BACK,
                                message="rolled back after promotion, on demand")
            return back, ("Warning", "RolledBack", f"100% back to {state.stable}; {state.revision} kept as prev")
        if state.phase in (Phase.ABORTED, Phase.ROLLED_BACK, Phase.FAILED) and state.stable:
            raise ValueError(f"nothing to roll back: the rollout of {state.revision} is {state.phase.value} and "
                             f"{state.stable} already serves 100%; apply a new spec to roll out again")
        raise ValueError("no previous stable revision to roll back to")
    raise ValueError(f"unknown action {action}")


def decide(
    spec: RolloutSpec,
    revision: str,
    live: Mapping[str, Any] | None,
    now: float,
    stats: WindowStats | None = None,
    interval_s: float = 300.0,
) -> Decision:
    """The next traffic for a canary strategy, given where Cloud Run and the rollout stand."""
    state = state_of(live)
    if live is None:  # B-020: a first deploy has nothing to compare with: 100% to the only revision
        first = RolloutState(revision=revision, stable="", phase=Phase.SUCCEEDED, weight=100,
                             message="first revision: no canary without a previous stable revision")
        return Decision(traffic_for(first), first)
    if state is None:  # taking over a service deployed without a rollout: what serves is stable
        stable = _serving(live)
        if stable == revision:
            done = RolloutState(revision=revision, stable="", phase=Phase.SUCCEEDED, weight=100)
            return Decision(traffic_for(done), done)
        state = RolloutState(revision=stable, stable="", phase=Phase.SUCCEEDED, weight=100)
    if state.revision != revision:  # a new spec: start from the stable revision, drop any candidate
        base = state.revision if state.phase is Phase.SUCCEEDED else state.stable
        superseded = [("Normal", "RolloutSuperseded", f"rollout of {state.revision} superseded by {revision}")] \
            if state.phase.active else []
        if revision == base:  # back to the spec that serves (e.g. after a failure): nothing to roll out
            back = RolloutState(revision=revision, stable="", phase=Phase.SUCCEEDED, weight=100,
                                message=f"{revision} is the stable revision: nothing to roll out")
            return Decision(traffic_for(back), back, superseded)
        start = RolloutState(revision=revision, stable=base, phase=Phase.PROGRESSING, step=-1, weight=0,
                             message=f"waiting for {revision} to be Ready")
        return Decision(traffic_for(start), start,
                        [*superseded, ("Normal", "RolloutStarted", f"canary {revision}, stable {base}")], wait=0.0)
    if not state.phase.active:
        return Decision(traffic_for(state), state)
    failed = _failed(live, revision)
    if failed:
        out = replace(state, phase=Phase.FAILED, weight=0, message=f"{revision} did not become ready: {failed}")
        return Decision(traffic_for(out), out, [("Warning", "RolloutFailed", out.message)])
    if state.phase is Phase.PAUSED:
        return Decision(traffic_for(state), state)
    if state.step < 0:
        if not _ready(live, revision):
            return Decision(traffic_for(state), state, wait=None)  # Cloud Run is still starting it
        return _enter_step(spec, state, 0, now, interval_s)
    if state.step_started <= 0 and state.approved > state.step:  # a gate was approved: take that step now
        return _enter_step(spec, state, state.step + 1, now, interval_s)
    if state.step_started <= 0:  # resumed: restart the window
        resumed = replace(state, step_started=now)
        return Decision(traffic_for(resumed), resumed, wait=interval_s, metrics_window=(revision, now))
    if stats is not None:
        verdict = judge(stats, spec.analysis)
    elif spec.analysis is None:
        verdict = Judgement(Verdict.PASS, ["no analysis configured"])
    else:
        verdict = Judgement(Verdict.INCONCLUSIVE, ["no metrics source to judge the analysis with"])
    figures = _figures(stats) if stats is not None else state.analysis
    elapsed = now - state.step_started
    if verdict.verdict is Verdict.FAIL:
        failures = state.failures + 1
        limit = spec.analysis.failure_limit if spec.analysis else 0
        if failures > limit:
            out = replace(state, phase=Phase.ROLLED_BACK, weight=0, failures=failures, analysis=figures,
                          message="analysis failed: " + "; ".join(verdict.reasons))
            return Decision(traffic_for(out), out, [("Warning", "RolledBack", out.message)])
        again = replace(state, failures=failures, step_started=now, analysis=figures,
                        message=f"check {failures} of {limit + 1} failed: " + "; ".join(verdict.reasons))
        return Decision(traffic_for(again), again, [("Warning", "AnalysisFailed", again.message)],
                        wait=interval_s, metrics_window=(revision, now))
    if elapsed < interval_s or verdict.verdict is Verdict.INCONCLUSIVE:
        holding = replace(state, analysis=figures, message=(
            f"step {state.step + 1}: {state.weight}%" if verdict.verdict is not Verdict.INCONCLUSIVE
            else f"step {state.step + 1}: {state.weight}%, " + "; ".join(verdict.reasons)))
        remaining = max(0.0, interval_s - elapsed)
        return Decision(traffic_for(state), state, wait=remaining or interval_s / 10,
                        metrics_window=(revision, state.step_started), observed=holding)
    return _enter_step(spec, replace(state, analysis=figures), state.step + 1, now, interval_s)


def _enter_step(spec: RolloutSpec, state: RolloutState, step: int, now: float, interval_s: float) -> Decision:
    steps = spec.steps or (100,)
    if spec.manual_gates and step > state.approved and step > 0 and state.phase is Phase.PROGRESSING:
        target = steps[step] if step < len(steps) else 100
        gated = replace(state, phase=Phase.PAUSED, message=f"{GATE_MESSAGE} before {target}% "
                        "(tfms rollout resume, or the tfms.dev/rollout-action=resume annotation)")
        return Decision(traffic_for(gated), gated, [("Normal", "RolloutGate", gated.message)])
    if step >= len(steps) or steps[step] >= 100:
        done = replace(state, phase=Phase.SUCCEEDED, step=len(steps) - 1, weight=100, step_started=now,
                       message=f"{state.revision} promoted")
        return Decision(traffic_for(done), done, [("Normal", "Promoted", f"{state.revision} takes 100% of traffic")])
    nxt = replace(state, step=step, weight=steps[step], step_started=now, failures=state.failures,
                  message=f"step {step + 1}: {steps[step]}%")
    return Decision(traffic_for(nxt), nxt, [("Normal", "RolloutStep", f"{state.revision} at {steps[step]}%")],
                    wait=interval_s, metrics_window=(state.revision, now))


def _figures(stats: WindowStats) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": stats.requests, "errorRate": round(stats.error_rate, 4)}
    if stats.p99_ms is not None:
        out["p99Ms"] = round(stats.p99_ms, 1)
    return out
