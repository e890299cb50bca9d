"""The canary state machine, step by step (pure: Cloud Run is a dict, time is a number)."""

from __future__ import annotations

from typing import Any

import pytest

from tfms.api.durations import parse_duration
from tfms.api.model import Analysis, RolloutSpec
from tfms.plan.analysis import WindowStats
from tfms.plan.rollout import (
    ANNOTATION,
    Action,
    Phase,
    RolloutState,
    apply_action,
    decide,
    state_of,
    traffic_for,
)

SPEC = RolloutSpec(strategy="canary", steps=(10, 50, 100), interval="1m",
                   analysis=Analysis(max_error_rate=0.05, max_p99_latency_ms=100, min_request_count=20))
REV = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


def _live(state: RolloutState | None = None, *, ready: str = "s-b", created: str = "s-b",
          failed: str = "", serving: str = "s-a") -> dict[str, Any]:
    live: dict[str, Any] = {
        "latestReadyRevision": f"p/l/services/s/revisions/{ready}",
        "latestCreatedRevision": f"p/l/services/s/revisions/{created}",
        "trafficStatuses": [{"type": REV, "revision": serving, "percent": 100}],
    }
    if state is not None:
        live["annotations"] = {ANNOTATION: state.to_json()}
    if failed:
        live["terminalCondition"] = {"state": "CONDITION_FAILED", "message": failed}
    return live


def _split(traffic: list[dict[str, Any]]) -> dict[str, tuple[int, str]]:
    return {t["revision"]: (t["percent"], t["tag"]) for t in traffic}


def test_first_deploy_takes_everything_b020() -> None:
    d = decide(SPEC, "s-a", None, now=0)
    assert d.state.phase is Phase.SUCCEEDED and _split(d.traffic) == {"s-a": (100, "stable")}


def test_new_revision_starts_dark_until_ready_b021() -> None:
    stable = RolloutState("s-a", "", Phase.SUCCEEDED, weight=100)
    d = decide(SPEC, "s-b", _live(stable, ready="s-a", created="s-a"), now=0, interval_s=60)
    assert d.state.phase is Phase.PROGRESSING and d.state.step == -1
    assert _split(d.traffic) == {"s-a": (100, "stable"), "s-b": (0, "canary")}
    waiting = decide(SPEC, "s-b", _live(d.state, ready="s-a", created="s-b"), now=5, interval_s=60)
    assert _split(waiting.traffic) == {"s-a": (100, "stable"), "s-b": (0, "canary")}  # not ready: no traffic


def test_candidate_that_fails_never_gets_traffic() -> None:
    state = RolloutState("s-b", "s-a", Phase.PROGRESSING)
    d = decide(SPEC, "s-b", _live(state, ready="s-a", created="s-b", failed="container exited 1"), now=5)
    assert d.state.phase is Phase.FAILED and "container exited 1" in d.state.message
    assert _split(d.traffic) == {"s-a": (100, "stable")}
    assert d.events[0][1] == "RolloutFailed"


def test_steps_advance_only_after_interval_and_passing_analysis() -> None:
    state = RolloutState("s-b", "s-a", Phase.PROGRESSING)
    d = decide(SPEC, "s-b", _live(state), now=100, interval_s=60)  # candidate ready -> first step
    assert (d.state.step, d.state.weight) == (0, 10) and d.metrics_window == ("s-b", 100)
    assert _split(d.traffic) == {"s-a": (90, "stable"), "s-b": (10, "canary")}
    good = WindowStats(requests=50, errors=0, p99_ms=20)
    early = decide(SPEC, "s-b", _live(d.state), now=130, stats=good, interval_s=60)
    assert early.state.weight == 10 and early.wait == pytest.approx(30)
    nxt = decide(SPEC, "s-b", _live(d.state), now=161, stats=good, interval_s=60)
    assert nxt.state.weight == 50 and nxt.state.step_started == 161
    done = decide(SPEC, "s-b", _live(nxt.state), now=222, stats=good, interval_s=60)
    assert done.state.phase is Phase.SUCCEEDED
    assert _split(done.traffic) == {"s-b": (100, "stable"), "s-a": (0, "prev")}
    assert [e[1] for e in done.events] == ["Promoted"]


def test_too_few_requests_hold_the_step() -> None:
    state = RolloutState("s-b", "s-a", Phase.PROGRESSING, step=0, weight=10, step_started=100)
    d = decide(SPEC, "s-b", _live(state), now=500, stats=WindowStats(requests=3, errors=0), interval_s=60)
    assert d.shown.weight == 10 and "need 20" in d.shown.message
    assert d.state == state  # holding a step stores nothing new: no Cloud Run write per pass


@pytest.mark.parametrize("stats", [WindowStats(requests=100, errors=10, p99_ms=5),
                                   WindowStats(requests=100, errors=0, p99_ms=900)])
def test_failed_analysis_rolls_back_everything_to_stable(stats: WindowStats) -> None:
    state = RolloutState("s-b", "s-a", Phase.PROGRESSING, step=1, weight=50, step_started=100)
    d = decide(SPEC, "s-b", _live(state), now=110, stats=stats, interval_s=60)  # fails fast, mid-step
    assert d.state.phase is Phase.ROLLED_BACK and d.state.weight == 0
    assert _split(d.traffic) == {"s-a": (100, "stable")}
    assert d.events[0][1] == "RolledBack" and "analysis failed" in d.state.message


def test_failure_limit_allows_retries_of_a_step() -> None:
    spec = RolloutSpec(strategy="canary", steps=(10, 100), interval="1m",
                       analysis=Analysis(max_error_rate=0.05, min_request_count=1, failure_limit=1))
    state = RolloutState("s-b", "s-a", Phase.PROGRESSING, step=0, weight=10, step_started=100)
    bad = WindowStats(requests=10, errors=5)
    once = decide(spec, "s-b", _live(state), now=110, stats=bad, interval_s=60)
    assert once.state.phase is Phase.PROGRESSING and once.state.failures == 1 and once.state.step_started == 110
    twice = decide(spec, "s-b", _live(once.state), now=120, stats=bad, interval_s=60)
    assert twice.state.phase is Phase.ROLLED_BACK


def test_new_spec_during_rollout_supersedes_from_stable() -> None:
    state = RolloutState("s-b", "s-a", Phase.PROGRESSING, step=1, weight=50, step_started=100)
    d = decide(SPEC, "s-c", _live(state), now=110, interval_s=60)
    assert d.state.stable == "s-a" and d.state.revision == "s-c"
    assert _split(d.traffic) == {"s-a": (100, "stable"), "s-c": (0, "canary")}  # s-b is gone
    assert [e[1] for e in d.events] == ["RolloutSuperseded", "RolloutStarted"]


def test_steady_state_is_stable() -> None:
    state = RolloutState("s-b", "s-a", Phase.SUCCEEDED, weight=100)
    d = decide(SPEC, "s-b", _live(state), now=1000)
    assert d.state == state and d.events == [] and d.wait is None


def test_takeover_of_a_service_without_rollout_state() -> None:
    d = decide(SPEC, "s-b", _live(None, serving="s-a", ready="s-a", created="s-a"), now=0)
    assert d.state.stable == "s-a" and d.state.phase is Phase.PROGRESSING


@pytest.mark.parametrize(("phase", "action", "expected_phase", "split"), [
    (Phase.PROGRESSING, Action.PROMOTE, Phase.SUCCEEDED, {"s-b": (100, "stable"), "s-a": (0, "prev")}),
    (Phase.PROGRESSING, Action.PAUSE, Phase.PAUSED, {"s-a": (90, "stable"), "s-b": (10, "canary")}),
    (Phase.PAUSED, Action.RESUME, Phase.PROGRESSING, {"s-a": (90, "stable"), "s-b": (10, "canary")}),
    (Phase.PROGRESSING, Action.ABORT, Phase.ABORTED, {"s-a": (100, "stable")}),
    (Phase.PROGRESSING, Action.ROLLBACK, Phase.ROLLED_BACK, {"s-a": (100, "stable")}),
    (Phase.SUCCEEDED, Action.ROLLBACK, Phase.ROLLED_BACK, {"s-a": (100, "stable"), "s-b": (0, "prev")}),
])
def test_on_demand_actions(phase: Phase, action: Action, expected_phase: Phase,
                           split: dict[str, tuple[int, str]]) -> None:
    state = RolloutState("s-b", "s-a", phase, step=0, weight=10 if phase.active else 100, step_started=1)
    new, _event = apply_action(state, action, _live(state))
    assert new.phase is expected_phase and _split(traffic_for(new)) == split


@pytest.mark.parametrize(("live", "why"), [
    ({"ready": "s-a", "created": "s-b", "failed": "container failed to start"}, "did not become ready"),
    ({"ready": "s-a", "created": "s-b"}, "is not Ready yet"),
])
def test_promote_never_sends_traffic_to_a_candidate_cloud_run_has_not_made_ready(
        live: dict[str, str], why: str) -> None:
    # The stored state still says Progressing: Cloud Run failed the revision (or is still starting
    # it) after the last pass, and a person asks to promote before the next one.
    state = RolloutState("s-b", "s-a", Phase.PROGRESSING, step=-1, weight=0)
    with pytest.raises(ValueError, match=why):
        apply_action(state, Action.PROMOTE, _live(state, **live))


def test_rolled_back_state_holds_until_the_spec_changes() -> None:
    state, _ = apply_action(RolloutState("s-b", "s-a", Phase.SUCCEEDED, weight=100), Action.ROLLBACK)
    d = decide(SPEC, "s-b", _live(state), now=5)
    assert d.state == state and _split(d.traffic) == {"s-a": (100, "stable"), "s-b": (0, "prev")}


@pytest.mark.parametrize("action", [Action.PROMOTE, Action.PAUSE, Action.RESUME, Action.ABORT])
def test_actions_refused_when_no_rollout_runs(action: Action) -> None:
    with pytest.raises(ValueError):
        apply_action(RolloutState("s-b", "s-a", Phase.SUCCEEDED, weight=100), action)


def test_state_round_trips_and_garbage_is_ignored() -> None:
    state = RolloutState("s-b", "s-a", Phase.PAUSED, step=1, weight=50, step_started=3.5, analysis={"requests": 3})
    assert state_of({"annotations": {ANNOTATION: state.to_json()}}) == state
    assert state_of({"annotations": {ANNOTATION: "{not json"}}) is None


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("30s", 30), ("1h30m", 5400), ("250ms", 0.25)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_manual_gates_hold_every_step_after_the_first_and_an_approval_takes_it_at_once() -> None:
    gated = RolloutSpec(strategy="canary", steps=(10, 100), interval="1m", manual_gates=True)
    at_10 = RolloutState("s-b", "s-a", Phase.PROGRESSING, step=0, weight=10, step_started=100)
    paused = decide(gated, "s-b", _live(at_10), now=200, interval_s=60).state
    assert (paused.phase, paused.weight) == (Phase.PAUSED, 10)  # the gate holds even the final 100%
    resumed, _ = apply_action(paused, Action.RESUME)
    taken = decide(gated, "s-b", _live(resumed), now=201, interval_s=60).state
    assert (taken.phase, taken.weight) == (Phase.SUCCEEDED, 100)  # no second gate, no extra interval
    # A plain pause (not a gate) resumes into a fresh window at the same step.
    held, _ = apply_action(at_10, Action.PAUSE)
    again, _ = apply_action(held, Action.RESUME)
    window = decide(gated, "s-b", _live(again), now=300, interval_s=60).state
    assert (window.phase, window.weight, window.step_started) == (Phase.PROGRESSING, 10, 300)


@pytest.mark.parametrize("phase", [Phase.ABORTED, Phase.ROLLED_BACK, Phase.FAILED])
def test_rollback_after_the_stable_revision_took_back_all_traffic_says_so(phase: Phase) -> None:
    with pytest.raises(ValueError, match=f"is {phase.value} and s-a already serves 100%"):
        apply_action(RolloutState("s-b", "s-a", phase, weight=0), Action.ROLLBACK)


@pytest.mark.parametrize("phase", [Phase.FAILED, Phase.ABORTED, Phase.ROLLED_BACK, Phase.PROGRESSING, Phase.PAUSED])
def test_going_back_to_the_stable_spec_is_not_a_canary_of_stable_against_itself(phase: Phase) -> None:
    """After a failed or aborted rollout (or during one), re-applying the spec that serves must
    settle at once: no 90/10 split of one revision, no steps."""
    state = RolloutState("s-b", "s-a", phase, step=0 if phase.active else -1, weight=10 if phase.active else 0)
    d = decide(SPEC, "s-a", _live(state, ready="s-b", created="s-b"), now=100, interval_s=60)
    assert d.state.phase is Phase.SUCCEEDED and d.state.revision == "s-a" and d.wait is None
    assert _split(d.traffic) == {"s-a": (100, "stable")}
    assert [e[1] for e in d.events] == (["RolloutSuperseded"] if phase.active else [])


@pytest.mark.parametrize("action", [Action.PAUSE, Action.RESUME])
def test_pause_and_resume_of_a_candidate_cloud_run_failed_are_refused(action: Action) -> None:
    phase = Phase.PAUSED if action is Action.RESUME else Phase.PROGRESSING
    state = RolloutState("s-b", "s-a", phase, step=-1, weight=0)
    with pytest.raises(ValueError, match=f"did not become ready .*there is nothing to {action.value}"):
        apply_action(state, action, _live(state, ready="s-a", created="s-b", failed="Image not found."))
