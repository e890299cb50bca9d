"""`tfms rollout ACTION --no-wait` says what it wrote and that it did not wait."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import base_object
from tfms.cli.main import main
from tfms.emulator import Emulator, EmulatorConfig


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(ready_delay=0.0))
    emu.start()
    yield emu
    emu.stop()


def _write(tmp_path: Path, version: int) -> Path:
    obj = base_object(model={"name": "fraud", "basePath": "gs://b/m", "version": version},
                      rollout={"strategy": "canary", "steps": [25, 100], "interval": "10ms", "manualGates": True})
    path = tmp_path / f"v{version}.yaml"
    path.write_text(yaml.safe_dump(obj))
    return path


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
