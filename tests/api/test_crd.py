"""The committed CRD is exactly what the schema generates."""

from __future__ import annotations

import yaml

from tests.conftest import REPO
from tfms.api.crd import crd


def test_crd_file_matches_schema() -> None:
    committed = yaml.safe_load((REPO / "crds" / "tfmodelservice.yaml").read_text())
    assert committed == crd(), "regenerate with: tfms crd > crds/tfmodelservice.yaml"


def _walk(schema: object) -> list[dict[str, object]]:
    out = []
    if isinstance(schema, dict):
        out.append(schema)
        for v in schema.values():
            out.extend(_walk(v))
    elif isinstance(schema, list):
        for v in schema:
            out.extend(_walk(v))
    return out


def test_crd_is_structural_and_explained() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    nodes = _walk(schema)
    assert not [n for n in nodes if "properties" in n and "additionalProperties" in n]
    spec_props = schema["properties"]["spec"]["properties"]
    assert all("description" in p for p in spec_props.values())
    names = crd()["spec"]["names"]
    assert names["shortNames"] == ["tfms"] and names["plural"] == "tfmodelservices"
    assert crd()["spec"]["versions"][0]["subresources"] == {"status": {}}
