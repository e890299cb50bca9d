"""`tfms validate` and `tfms render` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, base_object
from tfms.cli.main import main


def _write(tmp_path: Path, name: str, *docs: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_validate_ok_and_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "ok.yaml", base_object())
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok"


def test_validate_prints_every_error_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = base_object(traffic=[{"percent": 60, "tag": "Canary"}], runtime={"image": "tensorflow/serving"})
    path = _write(tmp_path, "bad.yaml", base_object(), bad)
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}#0: ok" in out
    assert f"{path}#1: 3 error(s)" in out
    for fragment in ("spec.runtime.image:", "spec.traffic:", "spec.traffic[0].tag:"):
        assert fragment in out


def test_validate_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_validate_bad_yaml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: TFModelService\nspec: [unclosed\n")
    assert main(["validate", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_render_json_with_revision_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "ok.yaml", base_object())
    assert main(["render", str(path), "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "projects/example-project/locations/us-central1/services/fraud-scorer"
    assert doc["template"]["revision"].startswith("fraud-scorer-")


def test_render_refuses_invalid_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "bad.yaml", base_object(traffic=[{"percent": 1}]))
    assert main(["render", str(path)]) == 1
    assert "spec.traffic: percentages must sum to exactly 100" in capsys.readouterr().err


def test_example_resolves_relative_model_path(capsys: pytest.CaptureFixture[str]) -> None:
    example = REPO / "manifests" / "examples" / "half-plus-two.yaml"
    assert main(["render", str(example), "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    args = doc["template"]["containers"][0]["args"]
    expected = REPO / "manifests" / "examples" / "models" / "half_plus_two"
    assert f"--model_base_path={expected}" in args
