"""`tfms rollout ...` as a user runs it, against the emulator: status, gates, promote, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import base_object
from tests.reliability.crashkit import live_split
from tfms.cli.main import main
from tfms.cli.rollout import status_line
from tfms.emulator import Emulator


def _write(tmp_path: Path, version: int) -> Path:
    obj = base_object(model={"name": "fraud", "basePath": "gs://b/m", "version": version},
                      rollout={"strategy": "canary", "steps": [25, 100], "interval": "10ms", "manualGates": True})
    path = tmp_path / f"v{version}.yaml"
    path.write_text(yaml.safe_dump(obj))
    return path


def _status(emulator: Emulator, path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["rollout", "status", "-f", str(path), "--endpoint", emulator.address, "-o", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    return row  # type: ignore[no-any-return]


def test_gate_resume_promote_and_rollback_from_the_cli(emulator: Emulator, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFMS_POLL_INTERVAL", "0.01")
    v1, v2 = _write(tmp_path, 1), _write(tmp_path, 2)
    endpoint = ["--endpoint", emulator.address]
    assert _status(emulator, v1, capsys)["phase"] == "NotDeployed"
    assert main(["apply", "-f", str(v1), *endpoint]) == 0
    assert main(["apply", "-f", str(v2), *endpoint]) == 0  # paused at the gate is not a failure
    row = _status(emulator, v2, capsys)
    assert (row["phase"], row["weight"], row["step"]) == ("Paused", 25, 0)
    stable = row["stable"]

    capsys.readouterr()
    assert main(["rollout", "status", "-f", str(v2), *endpoint]) == 0
    text = capsys.readouterr().out
    assert f"fraud-scorer: Paused | canary {row['revision']} 25% (step 1), stable {stable}" in text
    assert "waiting for approval before 100%" in text

    assert main(["rollout", "resume", "-f", str(v2), *endpoint]) == 0  # approves the gate: promoted
    row = _status(emulator, v2, capsys)
    assert (row["phase"], row["weight"]) == ("Succeeded", 100)
    assert (row["stable"], row["previous"]) == (row["revision"], stable)  # promoted: it is the stable one now

    assert main(["rollout", "rollback", "-f", str(v2), *endpoint]) == 0
    row = _status(emulator, v2, capsys)
    assert row["phase"] == "RolledBack"
    capsys.readouterr()
    assert main(["diff", "-f", str(v2), *endpoint]) == 0  # diff knows the rollout: nothing apply would change
    assert "fraud-scorer" in capsys.readouterr().out
    creates = [c for c in emulator.control.calls if c.method in ("CreateService", "UpdateService")]
    assert len({c.request.service.template.revision for c in creates}) == 2  # rollback made no revision

    capsys.readouterr()
    code = main(["rollout", "promote", "-f", str(v2), *endpoint])  # nothing to promote: refused, said why
    out = capsys.readouterr().out
    assert code == 1
    assert "RolloutActionRefused: nothing to promote: the rollout of" in out and "is RolledBack" in out


def test_rollout_of_a_non_canary_service_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(base_object()))
    with pytest.raises(SystemExit, match=r"none of these services uses rollout\.strategy: canary"):
        main(["rollout", "status", "-f", str(path)])


def test_promote_of_a_candidate_cloud_run_failed_is_refused_and_moves_no_traffic(
        emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported path: the new revision fails, `apply --no-wait` returns before any pass has
    seen it, and a person promotes. Cloud Run must keep serving the stable revision."""
    monkeypatch.setenv("TFMS_POLL_INTERVAL", "0.01")
    v1, v2 = _write(tmp_path, 1), _write(tmp_path, 2)
    endpoint = ["--endpoint", emulator.address]
    assert main(["apply", "-f", str(v1), *endpoint]) == 0
    stable = _status(emulator, v1, capsys)["revision"]
    emulator.control.fail_next_revision("CONTAINER_MISSING", "Image not found.")
    assert main(["apply", "-f", str(v2), "--no-wait", *endpoint]) == 0
    capsys.readouterr()

    code = main(["rollout", "promote", "-f", str(v2), *endpoint])
    out = capsys.readouterr().out
    assert code == 1
    assert "RolloutActionRefused" in out and "did not become ready" in out and "Image not found." in out
    assert live_split(emulator, "fraud-scorer") == {stable: 100}
    row = _status(emulator, v2, capsys)
    assert row["phase"] != "Succeeded"


def test_the_service_name_may_follow_the_files(emulator: Emulator, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    v1 = _write(tmp_path, 1)
    for argv in (["rollout", "status", "fraud-scorer", "-f", str(v1)], ["rollout", "status", "-f", str(v1),
                                                                        "fraud-scorer"]):
        capsys.readouterr()
        assert main([*argv, "--endpoint", emulator.address, "-o", "json"]) == 0
        assert [r["service"] for r in json.loads(capsys.readouterr().out)] == ["fraud-scorer"]
    with pytest.raises(SystemExit) as exc:
        main(["rollout", "status", "-f", str(v1), "fraud-scorer", "extra"])
    assert exc.value.code == 2
    assert "unrecognized arguments: fraud-scorer extra" in capsys.readouterr().err



def test_no_wait_reports_the_write_not_the_old_traffic(emulator: Emulator, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFMS_POLL_INTERVAL", "0.01")
    endpoint = ["--endpoint", emulator.address, "--no-check-model"]
    v1, v2 = _write(tmp_path, 1), _write(tmp_path, 2)
    assert main(["apply", "-f", str(v1), *endpoint]) == 0
    assert main(["apply", "-f", str(v2), *endpoint]) == 0  # paused at the manual gate, canary at 25%
    capsys.readouterr()

    assert main(["rollout", "resume", "--no-wait", "-f", str(v2), "--endpoint", emulator.address]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("fraud-scorer: resume written (update: rollout state | rollout Progressing: resumed)")
    assert lines[0].endswith("; not waiting for it (follow it with: tfms rollout status --watch fraud-scorer -f FILE)")
    assert "NotWaited" not in out and "TRAFFIC" not in out
    assert "(0.0s)" not in err

    capsys.readouterr()
    assert main(["rollout", "status", "-f", str(v2), "--endpoint", emulator.address, "-o", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    # The resume was written and nothing more: no later step ran, as the line said.
    assert (row["phase"], row["weight"], row["message"]) == ("Progressing", 25, "resumed")


@pytest.mark.parametrize(("row", "line"), [
    ({"service": "s", "phase": "NoRollout"}, "s: NoRollout"),
    ({"service": "s", "phase": "Progressing", "revision": "s-b", "weight": 0, "step": -1, "stable": "s-a",
      "message": "waiting for s-b to be Ready"},
     "s: Progressing | canary s-b 0% (not Ready yet), stable s-a | waiting for s-b to be Ready"),
    ({"service": "s", "phase": "Progressing", "revision": "s-b", "weight": 10, "step": 0, "stable": "s-a",
      "message": "step 1: 10%", "analysis": {"requests": 3}},
     "s: Progressing | canary s-b 10% (step 1), stable s-a | step 1: 10% | requests=3"),
    ({"service": "s", "phase": "Succeeded", "revision": "s-b", "weight": 100, "step": -1, "stable": "s-b",
      "message": "promoted on demand"},
     "s: Succeeded | canary s-b 100% (step 1), stable s-b | promoted on demand"),
])
def test_status_lines(row: dict[str, object], line: str) -> None:
    assert status_line(row) == line
