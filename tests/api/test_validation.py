"""Table-driven: each broken rule is reported with its field path and rule name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import base_object
from tfms.api.defaults import Defaults
from tfms.api.errors import SpecInvalid
from tfms.api.validation import parse, validate

Mutator = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutator:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return mutate


CASES: list[tuple[str, Mutator, set[tuple[str, str]]]] = [
    ("valid", lambda o: None, set()),
    ("name too long", _set("metadata.name", "a" * 50), {("metadata.name", "service-id-length")}),
    ("name uppercase", _set("metadata.name", "Fraud"), {("metadata.name", "service-id-format")}),
    ("name trailing hyphen", _set("metadata.name", "fraud-"), {("metadata.name", "service-id-format")}),
    ("name starts with digit", _set("metadata.name", "1fraud"), {("metadata.name", "service-id-format")}),
    ("wrong kind", _set("kind", "Service"), {("kind", "kind")}),
    ("missing model", lambda o: o["spec"].pop("model"), {("spec.model", "required")}),
    ("model without basePath", _set("spec.model", {"name": "m"}), {("spec.model.basePath", "required")}),
    ("unknown field", _set("spec.modle", {}), {("spec.modle", "unknown-field")}),
    ("wrong type", _set("spec.scaling", {"concurrency": "80"}), {("spec.scaling.concurrency", "schema-type")}),
    ("concurrency above 1000", _set("spec.scaling", {"concurrency": 1001}),
     {("spec.scaling.concurrency", "schema-maximum")}),
    ("timeout above 3600", _set("spec.scaling", {"timeoutSeconds": 3601}),
     {("spec.scaling.timeoutSeconds", "schema-maximum")}),
    ("min above max", _set("spec.scaling", {"minInstances": 5, "maxInstances": 2}),
     {("spec.scaling.minInstances", "min-le-max")}),
    ("image latest", _set("spec.runtime.image", "tensorflow/serving:latest"),
     {("spec.runtime.image", "image-pinned")}),
    ("image latest-gpu", _set("spec.runtime.image", "tensorflow/serving:latest-gpu"),
     {("spec.runtime.image", "image-pinned")}),
    ("image untagged", _set("spec.runtime.image", "gcr.io/p/serving"), {("spec.runtime.image", "image-pinned")}),
    ("image with registry port untagged", _set("spec.runtime.image", "localhost:5000/serving"),
     {("spec.runtime.image", "image-pinned")}),
    ("image digest ok", _set("spec.runtime.image", "gcr.io/p/serving@sha256:" + "a" * 64), set()),
    ("relative base path", _set("spec.model.basePath", "models/fraud"), {("spec.model.basePath", "model-base-path")}),
    ("bad project", _set("spec.project", "Example"), {("spec.project", "project-id")}),
    ("bad region", _set("spec.region", "moon"), {("spec.region", "region")}),
    ("cpu garbage", _set("spec.runtime.resources", {"cpu": "lots"}), {("spec.runtime.resources.cpu", "cpu-quantity")}),
    ("cpu below 1 needs concurrency 1", _set("spec.runtime.resources", {"cpu": "500m"}),
     {("spec.scaling.concurrency", "cpu-below-1-concurrency")}),
    ("reserved env", _set("spec.runtime.env", [{"name": "PORT", "value": "1"}]),
     {("spec.runtime.env[0].name", "env-reserved")}),
    ("duplicate env", _set("spec.runtime.env", [{"name": "A"}, {"name": "A"}]),
     {("spec.runtime.env[1].name", "env-unique")}),
    ("huge env value", _set("spec.runtime.env", [{"name": "A", "value": "x" * (32 * 1024 + 1)}]),
     {("spec.runtime.env[0].value", "env-value-size")}),
    ("owned flag in args", _set("spec.runtime.args", ["--rest_api_port=8500"]),
     {("spec.runtime.args[0]", "owned-flag")}),
    ("traffic sum", _set("spec.traffic", [{"percent": 50}, {"revision": "fraud-scorer-a", "percent": 40}]),
     {("spec.traffic", "traffic-sum")}),
    ("traffic percent range", _set("spec.traffic", [{"percent": 101}]),
     {("spec.traffic[0].percent", "schema-maximum"), ("spec.traffic", "traffic-sum")}),
    # B-003: tags must be DNS-1035 labels; unique.
    ("tag not dns-1035", _set("spec.traffic", [{"percent": 100, "tag": "Canary_1"}]),
     {("spec.traffic[0].tag", "dns-1035-label")}),
    ("tag starts with digit", _set("spec.traffic", [{"percent": 100, "tag": "1st"}]),
     {("spec.traffic[0].tag", "dns-1035-label")}),
    ("duplicate tags", _set("spec.traffic", [{"percent": 50, "tag": "a"},
                                             {"revision": "fraud-scorer-x", "percent": 50, "tag": "a"}]),
     {("spec.traffic[1].tag", "tag-unique")}),
    ("pinned revision of another service", _set("spec.traffic", [{"revision": "other-00001-abc", "percent": 100}]),
     {("spec.traffic[0].revision", "revision-prefix")}),
    ("revision and latestRevision", _set("spec.traffic", [{"revision": "fraud-scorer-a", "latestRevision": True,
                                                           "percent": 100}]),
     {("spec.traffic[0].latestRevision", "traffic-target")}),
    ("latestRevision false without revision", _set("spec.traffic", [{"latestRevision": False, "percent": 100}]),
     {("spec.traffic[0].revision", "traffic-target")}),
    ("spec not an object", _set("spec", "oops"), {("spec", "required")}),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rules(mutate: Mutator, expected: set[tuple[str, str]]) -> None:
    obj = base_object()
    mutate(obj)
    got = {(e.path, e.rule) for e in validate(obj)}
    assert got == expected


def test_all_errors_reported_at_once() -> None:
    obj = base_object(traffic=[{"percent": 10, "tag": "Bad"}], scaling={"concurrency": 0})
    obj["metadata"]["name"] = "X" * 60
    rules = {e.rule for e in validate(obj)}
    assert {"service-id-length", "service-id-format", "dns-1035-label", "traffic-sum", "schema-minimum"} <= rules


def test_messages_name_field_rule_and_value() -> None:
    obj = base_object(traffic=[{"percent": 100, "tag": "Canary"}])
    (err,) = validate(obj)
    assert str(err).startswith("spec.traffic[0].tag: tags must be DNS-1035 labels")
    assert "[dns-1035-label]" in str(err) and "'Canary'" in str(err)


def test_parse_raises_with_every_error_and_source() -> None:
    obj = base_object(traffic=[{"percent": 10}])
    obj["metadata"]["name"] = "Bad"
    with pytest.raises(SpecInvalid) as info:
        parse(obj, source="model.yaml")
    assert info.value.source == "model.yaml"
    assert [e.rule for e in info.value.errors] == ["service-id-format", "traffic-sum"]


def test_project_and_region_default_from_operator_settings() -> None:
    obj = base_object()
    del obj["spec"]["project"], obj["spec"]["region"]
    assert {(e.path, e.rule) for e in validate(obj)} == {("spec.project", "required")}
    svc = parse(obj, Defaults.from_env({"TFMS_PROJECT": "other-project", "TFMS_REGION": "europe-west1"}))
    assert (svc.project, svc.region) == ("other-project", "europe-west1")


def test_defaults_are_explicit_and_input_untouched() -> None:
    obj = base_object()
    before = repr(obj)
    svc = parse(obj)
    assert repr(obj) == before
    assert (svc.runtime.cpu, svc.runtime.memory) == ("1", "2Gi")
    assert (svc.scaling.min_instances, svc.scaling.max_instances, svc.scaling.concurrency,
            svc.scaling.timeout_seconds) == (0, 100, 80, 300)
    assert svc.ingress == "all" and svc.traffic == () and svc.deletion_policy == "Delete"


@pytest.mark.parametrize("garbage", [None, 3, "x", [], [1, 2], {"runtime": "x", "scaling": []}])
def test_malformed_specs_never_crash(garbage: Any) -> None:
    obj = base_object()
    obj["spec"] = garbage if not isinstance(garbage, dict) else {**obj["spec"], **garbage}
    errors = validate(obj)
    assert errors and all(e.path.startswith("spec") for e in errors)
