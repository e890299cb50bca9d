"""`tfms diff` and `tfms plan` against the emulator: what would change, and exit codes CI can use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import base_object
from tfms.cli.main import main
from tfms.emulator import Emulator

READS_ONLY = {"GetService", "ListServices", "GetOperation"}


def _write(tmp_path: Path, obj: dict, name: str = "svc.yaml") -> Path:  # type: ignore[type-arg]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(obj))
    return path


@pytest.fixture(autouse=True)
def _fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFMS_POLL_INTERVAL", "0.01")


def test_diff_exit_codes_follow_kubectl(emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, base_object())
    assert main(["diff", "-f", str(path), "--endpoint", emulator.address]) == 1
    assert "fraud-scorer (example-project/us-central1): create" in capsys.readouterr().out
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address]) == 0
    capsys.readouterr()
    assert main(["diff", "-f", str(path), "--endpoint", emulator.address]) == 0
    assert capsys.readouterr().out.strip() == "fraud-scorer (example-project/us-central1): none"


def test_diff_shows_owned_changes_only_and_writes_nothing(emulator: Emulator, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, base_object())
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address]) == 0
    changed = base_object(scaling={"concurrency": 40}, access={"ingress": "internal"})
    _write(tmp_path, changed)
    before = len(emulator.control.calls)
    capsys.readouterr()
    assert main(["diff", "-f", str(path), "--endpoint", emulator.address, "-o", "json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    paths = [c["path"] for c in report["changes"]]
    assert paths == ["template.revision", "template.maxInstanceRequestConcurrency", "ingress"]
    assert report["changes"][1] == {"path": "template.maxInstanceRequestConcurrency", "live": 80, "desired": 40}
    assert {c.method for c in emulator.control.calls[before:]} <= READS_ONLY


def test_plan_asks_cloud_run_and_changes_nothing(emulator: Emulator, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, base_object())
    assert main(["plan", "-f", str(path), "--endpoint", emulator.address]) == 0
    out = capsys.readouterr().out
    assert "create" in out and "Cloud Run validate_only: ok" in out
    creates = [c.request for c in emulator.control.calls if c.method == "CreateService"]
    assert creates and all(r.validate_only for r in creates)
    assert not emulator.state.services


def test_plan_reports_cloud_run_refusal(emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A refusal only the server knows about (here: quota-like injected failure) is reported, exit 1."""
    import grpc

    path = _write(tmp_path, base_object())
    emulator.control.fail_next("CreateService", grpc.StatusCode.INVALID_ARGUMENT, count=1,
                               message="template.containers[0].image: Image not found")
    assert main(["plan", "-f", str(path), "--endpoint", emulator.address]) == 1
    assert "Image not found" in capsys.readouterr().out


def test_diff_refuses_service_not_owned(emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, base_object())
    assert main(["apply", "-f", str(path), "--endpoint", emulator.address]) == 0
    other = base_object()
    other["metadata"]["namespace"] = "other-team"
    capsys.readouterr()
    assert main(["diff", "-f", str(_write(tmp_path, other, "other.yaml")), "--endpoint", emulator.address]) == 2
    assert "owned by TFModelService ml/fraud-scorer" in capsys.readouterr().out
