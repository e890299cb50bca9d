"""Traffic as the executor sees it: the routes it is told (the API rules are in conformance/test_traffic.py)."""

from __future__ import annotations

from google.cloud import run_v2

from tests.emulator.emulator_testkit import IMAGE2, SUCCEEDED, Api, ManualExecutor, short, to_revision
from tfms.emulator import Emulator


def _two_revisions(api: Api) -> tuple[run_v2.Service, str, str]:
    svc = api.create_ready("svc")
    first = short(svc.latest_created_revision)
    svc.template.containers[0].image = IMAGE2
    svc = api.update_ready(svc)
    return svc, first, short(svc.latest_created_revision)


def test_split_with_tags_becomes_routes(api: Api, emulator: Emulator) -> None:
    svc, first, second = _two_revisions(api)
    svc.traffic = [to_revision(first, 80, tag="stable"), to_revision(second, 20, tag="canary")]
    api.update_ready(svc)
    assert emulator.wait_executor_idle()
    split, tags = emulator.executor.routes[svc.name]  # type: ignore[attr-defined]
    assert split == [(f"{svc.name}/revisions/{first}", 80), (f"{svc.name}/revisions/{second}", 20)]
    assert tags == {"stable": f"{svc.name}/revisions/{first}", "canary": f"{svc.name}/revisions/{second}"}


def test_pinned_traffic_routes_stay_on_the_pinned_revision(api: Api, emulator: Emulator) -> None:
    svc = api.create_ready("svc")
    first = short(svc.latest_created_revision)
    svc.traffic = [to_revision(first, 100)]
    svc = api.update_ready(svc)
    svc.template.containers[0].image = IMAGE2
    api.update_ready(svc)
    assert emulator.wait_executor_idle()
    assert emulator.executor.routes[svc.name][0] == [(f"{svc.name}/revisions/{first}", 100)]  # type: ignore[attr-defined]


def test_updates_while_reconciling_finish_together(manual_api: Api, manual: ManualExecutor) -> None:
    """A second update while the first is in flight: both operations end with the reconciliation,
    and routes change once, to the final state."""
    op = manual_api.create("svc")
    first = manual.wait_launched(1)
    manual.ready(first.revision)
    svc = op.result(timeout=5)
    assert svc.uri == "https://svc.manual.test"
    svc.template.containers[0].image = IMAGE2
    op = manual_api.update(svc)
    second = manual.wait_launched(2)
    during = manual_api.get("svc")
    during.labels["x"] = "y"
    op2 = manual_api.update(during)
    assert not op.done() and not op2.done()
    manual.ready(second.revision)
    assert op.result(timeout=5).observed_generation == 3 == op2.result(timeout=5).observed_generation
    final = manual_api.get("svc")
    assert final.terminal_condition.state == SUCCEEDED and final.labels == {"x": "y"}
    assert manual_api.emulator.wait_executor_idle()
    assert manual.routes[final.name] == ([(second.revision, 100)], {})
