"""Golden files: each case renders to exactly the committed Cloud Run v2 Service.

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

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.yaml"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_cloudrun_golden(case: Path) -> None:
    rendered = render_service(parse(yaml.safe_load(case.read_text())))
    doc = {"name": rendered.name, **rendered.body}
    golden = HERE / "golden" / f"{case.stem}.cloudrun.yaml"
    text = yaml.safe_dump(doc, sort_keys=False)
    if os.environ.get("TFMS_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_render_is_a_valid_v2_service(case: Path) -> None:
    """The real client's types accept every field (names, enums, durations) we render."""
    rendered = render_service(parse(yaml.safe_load(case.read_text())))
    service = run_v2.Service.from_json(json.dumps(rendered.body))
    assert service.template.revision == rendered.revision
    assert service.template.containers[0].ports[0].container_port == 8080
