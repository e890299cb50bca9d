"""Bug reports from ../shared/cases/bugs that validation and naming must prevent."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tests.conftest import base_object
from tfms.api.validation import parse, validate
from tfms.render.cloudrun import render_service


def _case_text(shared_dir: Path, prefix: str) -> str:
    (path,) = (shared_dir / "cases" / "bugs").glob(f"{prefix}-*.md")
    return path.read_text()


def test_b001_single_target_without_percent_gets_100(shared_dir: Path) -> None:
    assert "no percent" in _case_text(shared_dir, "001")
    svc = parse(base_object(traffic=[{"tag": "latest", "latestRevision": True}]))
    traffic = render_service(svc).body["traffic"]
    assert traffic == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "latest"}]


@pytest.mark.parametrize("tag", ["v1.2", "Canary", "-x", "x-", "@latest", "1st", "a_b", "x" * 64])
def test_b003_tags_must_be_dns_1035_labels(shared_dir: Path, tag: str) -> None:
    assert "DNS-1035" in _case_text(shared_dir, "003")
    errors = validate(base_object(traffic=[{"percent": 100, "tag": tag}]))
    assert ("spec.traffic[0].tag", "dns-1035-label") in {(e.path, e.rule) for e in errors}


def test_b003_duplicate_tags(shared_dir: Path) -> None:
    errors = validate(base_object(traffic=[{"percent": 50, "tag": "canary"},
                                           {"revision": "fraud-scorer-a", "percent": 50, "tag": "canary"}]))
    assert [(e.path, e.rule) for e in errors] == [("spec.traffic[1].tag", "tag-unique")]


def test_b005_hostnames_that_cannot_exist_are_refused_at_validation(shared_dir: Path) -> None:
    """A name that makes an invalid host never reaches the API to hang there."""
    assert "hostname" in _case_text(shared_dir, "005").lower()
    obj = base_object(traffic=[{"percent": 100, "tag": "continuous-events-propagation"}])
    obj["metadata"]["name"] = "wathola-receiver-with-a-long-service-name"
    assert {e.rule for e in validate(obj)} == {"tag-url-length"}
    obj["metadata"]["name"] = "test-continuous-events-propagation-with-prober-abcde"
    assert {e.rule for e in validate(obj)} == {"service-id-length", "tag-url-length"}


def test_b010_unprefixed_revision_refused(shared_dir: Path) -> None:
    assert "prefixed" in _case_text(shared_dir, "010")
    obj = base_object(traffic=[{"revision": "green", "percent": 100}])
    obj["metadata"]["name"] = "my-service"
    assert [(e.path, e.rule) for e in validate(obj)] == [("spec.traffic[0].revision", "revision-prefix")]


def test_b032_gpu_below_minimum_refused_and_cpu_throttling_never_rendered(shared_dir: Path) -> None:
    assert "nvidia-l4" in _case_text(shared_dir, "032")
    trigger = base_object(runtime={"image": "us-docker.pkg.dev/example-project/r/tf-serving-gpu:2.15",
                                   "gpu": {"type": "nvidia-l4"}, "resources": {"cpu": "2", "memory": "8Gi"}},
                          scaling={"cpuAlwaysAllocated": False})
    assert {e.rule for e in validate(trigger)} == {"gpu-minimum-cpu", "gpu-minimum-memory", "gpu-cpu-always-allocated"}
    fixed = base_object(runtime={"image": "us-docker.pkg.dev/example-project/r/tf-serving-gpu:2.15",
                                 "gpu": {"type": "nvidia-l4"}})
    container = render_service(parse(fixed)).body["template"]["containers"][0]
    assert container["resources"]["cpuIdle"] is False
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}


@pytest.mark.parametrize(("namespace", "name"), [("ml", "fraud-scorer"), ("Team.Platform", "a" * 49),
                                                 ("x" * 63, "b")])
def test_b040_ownership_labels_are_valid_gcp_labels(shared_dir: Path, namespace: str, name: str) -> None:
    """Ownership is recorded in labels Cloud Run accepts, whatever the object's namespace."""
    assert "ownership" in _case_text(shared_dir, "040").lower()
    obj = base_object()
    obj["metadata"].update(name=name, namespace="ml")
    # Validation refuses a namespace that is not a DNS-1123 label; render must still never emit a bad label.
    labels = render_service(dataclasses.replace(parse(obj), namespace=namespace)).body["labels"]
    assert labels["managed-by"] == "tfms"
    for key, value in labels.items():
        assert re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) and re.fullmatch(r"[a-z0-9_-]{0,63}", value)
