"""Golden files: each case renders, in every `tfms render --format`, to exactly the committed file.

`golden/<case>.<format>.yaml`. A spec a format refuses (a GPU as plain Knative) has its
refusal as the golden file, so what is refused, and why, is reviewed like any output.
Regenerate after an intended change with TFMS_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from google.cloud import run_v2

from tfms.api.validation import parse
from tfms.render.cloudrun import render_service
from tfms.render.formats import FORMATS, render_document
from tfms.render.knative import KnativeUnsupported

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.yaml"))


def golden_text(case: Path, fmt: str) -> str:
    svc = parse(yaml.safe_load(case.read_text()))
    try:
        return yaml.safe_dump(render_document(svc, fmt), sort_keys=False)
    except KnativeUnsupported as refused:
        problems = [{"path": p.path, "rule": p.rule, "message": p.message} for p in refused.problems]
        return f"# tfms render --format {fmt} refuses this spec\n" + yaml.safe_dump(
            {"error": type(refused).__name__, "problems": problems}, sort_keys=False)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden(case: Path, fmt: str) -> None:
    golden = HERE / "golden" / f"{case.stem}.{fmt}.yaml"
    text = golden_text(case, fmt)
    if os.environ.get("TFMS_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_no_stale_golden_files() -> None:
    """A golden file without a case (renamed, removed) or format would never be checked."""
    expected = {f"{case.stem}.{fmt}.yaml" for case in CASES for fmt in FORMATS}
    assert {p.name for p in (HERE / "golden").glob("*.yaml")} == expected


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_render_is_a_valid_v2_service(case: Path) -> None:
    """The real client's types accept every field (names, enums, durations) we render."""
    rendered = render_service(parse(yaml.safe_load(case.read_text())))
    service = run_v2.Service.from_json(json.dumps(rendered.body))
    assert service.template.revision == rendered.revision
    assert service.template.containers[0].ports[0].container_port == 8080
