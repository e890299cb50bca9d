"""Reconcile through the real async client against the emulator over loopback gRPC."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import grpc
import pytest
import yaml
from google.api_core.future import polling
from google.cloud import run_v2

from tests.conftest import base_object
from tfms.api.validation import parse
from tfms.backends.cloudrun import CloudRun
from tfms.backends.errors import NotOwned, RevisionNameConflict
from tfms.cli.main import main
from tfms.emulator import Emulator
from tfms.plan.convergence import Phase
from tfms.plan.service import Action
from tfms.reconcile.retry import Backoff
from tfms.reconcile.service import apply_service, wait_converged
from tfms.render.cloudrun import render_service

FAST = Backoff(attempts=5, initial=0.01, maximum=0.05)
WRITES = {"CreateService", "UpdateService", "DeleteService", "SetIamPolicy"}
POLL = polling.DEFAULT_POLLING.with_delay(initial=0.01, maximum=0.05)


def _writes(emulator: Emulator) -> list[str]:
    return [c.method for c in emulator.control.calls if c.method in WRITES]


async def _apply_ready(backend: CloudRun, obj: dict) -> dict:  # type: ignore[type-arg]
    applied = await apply_service(backend, parse(obj), FAST)
    state, live = await wait_converged(backend, applied.rendered, timeout=10, interval=0.01, backoff=FAST)
    assert state.phase is Phase.READY, state
    assert live is not None
    return live


async def test_create_then_ready(backend: CloudRun, emulator: Emulator) -> None:
    obj = base_object()
    live = await _apply_ready(backend, obj)
    rendered = render_service(parse(obj))
    assert live["latestReadyRevision"].endswith("/revisions/" + rendered.revision)
    assert live["uri"].startswith("https://fraud-scorer-")
    assert live["labels"]["managed-by"] == "tfms"
    assert _writes(emulator) == ["CreateService"]


async def test_unchanged_spec_makes_no_write_and_no_revision(backend: CloudRun, emulator: Emulator) -> None:
    """B-006: re-applying an unchanged spec is a no-op."""
    obj = base_object()
    await _apply_ready(backend, obj)
    before = len(_writes(emulator))
    applied = await apply_service(backend, parse(obj), FAST)
    assert applied.plan.action is Action.NONE
    assert len(_writes(emulator)) == before
    revisions = await backend.list_revisions(applied.rendered.name)
    assert len(revisions) == 1


async def test_env_change_makes_a_new_revision(backend: CloudRun) -> None:
    """B-006: changing only an env var gives a new revision name."""
    obj = base_object()
    first = await _apply_ready(backend, obj)
    changed = base_object(runtime={"image": "tensorflow/serving:2.19.0", "env": [{"name": "A", "value": "1"}]})
    second = await _apply_ready(backend, changed)
    assert first["latestReadyRevision"] != second["latestReadyRevision"]
    revisions = await backend.list_revisions(second["name"])
    assert len(revisions) == 2


async def test_foreign_revision_name_is_never_echoed(backend: CloudRun, emulator: Emulator,
                                                     raw_client: run_v2.ServicesClient) -> None:
    """B-009: a console edit named a revision; our next write carries our own name."""
    obj = base_object()
    live = await _apply_ready(backend, obj)
    svc = raw_client.get_service(name=live["name"])
    svc.template.revision = ""
    svc.template.containers[0].env.append(run_v2.EnvVar(name="EDITED", value="in-console"))
    raw_client.update_service(service=svc).result(timeout=10, polling=POLL)
    foreign = raw_client.get_service(name=live["name"]).latest_created_revision
    assert not foreign.endswith(render_service(parse(obj)).revision)

    applied = await apply_service(backend, parse(obj), FAST)
    assert applied.plan.action is Action.UPDATE
    sent = [c.request for c in emulator.control.calls if c.method == "UpdateService"][-1]
    assert sent.service.template.revision == applied.rendered.revision
    assert all(e.name != "EDITED" for e in sent.service.template.containers[0].env)
    state, after = await wait_converged(backend, applied.rendered, timeout=10, interval=0.01, backoff=FAST)
    assert state.phase is Phase.READY
    assert after is not None and after["latestReadyRevision"].endswith(applied.rendered.revision)


async def test_revision_name_conflict_is_permanent(backend: CloudRun, raw_client: run_v2.ServicesClient) -> None:
    """B-008: a name that already exists with a different template -> a clear permanent error."""
    obj = base_object()
    await _apply_ready(backend, obj)
    changed = base_object(runtime={"image": "tensorflow/serving:2.18.0"})
    squatted = render_service(parse(changed)).revision
    svc = raw_client.get_service(name=render_service(parse(obj)).name)
    svc.template.revision = squatted
    svc.template.containers[0].env.append(run_v2.EnvVar(name="OTHER", value="content"))
    raw_client.update_service(service=svc).result(timeout=10, polling=POLL)

    with pytest.raises(RevisionNameConflict) as info:
        await apply_service(backend, parse(changed), FAST)
    assert squatted in str(info.value)


async def test_service_not_created_by_tfms_is_left_alone(backend: CloudRun, emulator: Emulator,
                                                         raw_client: run_v2.ServicesClient) -> None:
    rendered = render_service(parse(base_object()))
    body = copy.deepcopy(rendered.body)
    body["labels"] = {"team": "someone-else"}
    raw_client.create_service(
        parent=rendered.parent, service_id=rendered.service_id,
        service=run_v2.Service.from_json(json.dumps(body)),
    ).result(timeout=10, polling=POLL)
    writes = len(_writes(emulator))
    with pytest.raises(NotOwned, match="not created by tfms"):
        await apply_service(backend, parse(base_object()), FAST)
    assert len(_writes(emulator)) == writes


async def test_failed_revision_keeps_traffic_and_says_why(backend: CloudRun, emulator: Emulator) -> None:
    first = await _apply_ready(backend, base_object())
    emulator.control.fail_next_revision("CONTAINER_MISSING", "Image 'x' not found.")
    changed = base_object(runtime={"image": "tensorflow/serving:2.18.0"})
    applied = await apply_service(backend, parse(changed), FAST)
    state, live = await wait_converged(backend, applied.rendered, timeout=10, interval=0.01, backoff=FAST)
    assert state.phase is Phase.FAILED
    assert "not found" in state.message or "not ready" in state.message
    assert live is not None and live["latestReadyRevision"] == first["latestReadyRevision"]


async def test_transient_errors_are_retried(backend: CloudRun, emulator: Emulator) -> None:
    emulator.control.fail_next("GetService", grpc.StatusCode.UNAVAILABLE, count=2)
    emulator.control.fail_next("CreateService", grpc.StatusCode.UNAVAILABLE, count=1)
    live = await _apply_ready(backend, base_object())
    assert live["labels"]["managed-by"] == "tfms"
    assert _writes(emulator).count("CreateService") == 2


def test_cli_apply_prints_table(emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFMS_POLL_INTERVAL", "0.01")
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(base_object()))
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address, "--timeout", "20"]) == 0
    out = capsys.readouterr().out
    header, row = out.strip().splitlines()[:2]
    assert header.split()[:5] == ["SERVICE", "URL", "READY", "REVISION", "TRAFFIC"]
    assert row.split()[0] == "fraud-scorer" and row.split()[2] == "True"
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address]) == 0
    assert [c.method for c in emulator.control.calls if c.method in WRITES] == ["CreateService"]


def test_cli_apply_prints_each_tag_url(emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag's URL reaches its revision at any percent: apply is where the user learns it."""
    monkeypatch.setenv("TFMS_POLL_INTERVAL", "0.01")
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(base_object(traffic=[{"latestRevision": True, "percent": 100, "tag": "live"}])))
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address, "--timeout", "20"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " tag " in line]
    assert len(lines) == 1 and lines[0].startswith("fraud-scorer tag live: https://live---fraud-scorer-"), lines
