"""Pure naming/validation rules, checked without a server."""

from __future__ import annotations

import random
import re

import pytest

from tfms.emulator import naming, validation


@pytest.mark.parametrize(
    ("region", "code"),
    [("us-central1", "uc"), ("europe-west1", "ew"), ("asia-northeast1", "an"), ("me-central2", "mc")],
)
def test_region_codes(region: str, code: str) -> None:
    assert naming.region_code(region) == code


def test_urls() -> None:
    h = naming.project_hash("example-project")
    assert re.fullmatch(r"[a-z0-9]{10}", h) and h == naming.project_hash("example-project")
    assert h != naming.project_hash("other-project")
    assert naming.service_url("example-project", "europe-west1", "svc") == f"https://svc-{h}-ew.a.run.app"
    assert naming.tag_url("example-project", "us-central1", "svc", "canary") == f"https://canary---svc-{h}-uc.a.run.app"
    assert naming.deterministic_url("123456789012", "us-central1", "svc") == (
        "https://svc-123456789012.us-central1.run.app"
    )


def test_generated_revision_ids_avoid_taken_names() -> None:
    rng = random.Random(0)
    first = naming.generated_revision_id("svc", 7, set(), rng)
    assert re.fullmatch(r"svc-00007-[a-z]{3}", first)
    again = naming.generated_revision_id("svc", 7, {first}, random.Random(0))
    assert again != first


def test_names_parse() -> None:
    name = naming.parse_service("projects/p/locations/l/services/s")
    assert name == naming.ServiceName("p", "l", "s")
    assert naming.parse_revision("projects/p/locations/l/services/s/revisions/s-1") == (name, "s-1")
    assert naming.parse_service("projects/p/locations/l/services/s/extra") is None
    assert naming.parse_parent("projects/p/locations/l") == ("p", "l")


@pytest.mark.parametrize(("text", "cpu"), [("1", 1.0), ("0.5", 0.5), ("1000m", 1.0), ("250m", 0.25), ("x", None)])
def test_parse_cpu(text: str, cpu: float | None) -> None:
    assert validation.parse_cpu(text) == cpu


@pytest.mark.parametrize(
    ("text", "size"), [("512Mi", 512 * 1024**2), ("16Gi", 16 * 1024**3), ("4G", 4 * 10**9), ("1x", None)]
)
def test_parse_memory(text: str, size: int | None) -> None:
    assert validation.parse_memory(text) == size
