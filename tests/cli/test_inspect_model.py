"""`tfms inspect-model` and `tfms validate --check-model` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, base_object
from tfms.cli.main import main

HPT = REPO / "manifests" / "examples" / "models" / "half_plus_two"


def test_inspect_a_good_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect-model", str(HPT), "--version", "1", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sampleRequest"] == {"instances": [0.0]}
    assert [v["version"] for v in doc["versions"]] == [1]  # the pin makes a specific policy


def test_inspect_a_missing_pinned_version_fails_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect-model", str(HPT), "--version", "7"]) == 1
    assert "7" in capsys.readouterr().out


def test_inspect_a_missing_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect-model", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_validate_check_model_reads_each_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = base_object(model={"name": "half_plus_two", "basePath": str(HPT), "version": 2})
    bad = base_object(model={"name": "half_plus_two", "basePath": str(HPT / "1")})
    bad["metadata"]["name"] = "version-dir"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([good, bad]))
    assert main(["validate", "--check-model", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}#0: model ok" in out
    assert f"{path}#1: model would not serve" in out
