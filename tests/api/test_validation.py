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
    (
        "concurrency above 1000",
        _set("spec.scaling", {"concurrency": 1001}),
        {("spec.scaling.concurrency", "schema-maximum")},
    ),
    (
        "timeout above 3600",
        _set("spec.scaling", {"timeoutSeconds": 3601}),
        {("spec.scaling.timeoutSeconds", "schema-maximum")},
    ),
    (
        "min above max",
        _set("spec.scaling", {"minInstances": 5, "maxInstances": 2}),
        {("spec.scaling.minInstances", "min-le-max")},
    ),
    ("image latest", _set("spec.runtime.image", "tensorflow/serving:latest"), {("spec.runtime.image", "image-pinned")}),
    (
        "image latest-gpu",
        _set("spec.runtime.image", "tensorflow/serving:latest-gpu"),
        {("spec.runtime.image", "image-pinned"), ("spec.runtime.image", "gpu-image")},
    ),
    ("image untagged", _set("spec.runtime.image", "gcr.io/p/serving"), {("spec.runtime.image", "image-pinned")}),
    (
        "image with registry port untagged",
        _set("spec.runtime.image", "localhost:5000/serving"),
        {("spec.runtime.image", "image-pinned")},
    ),
    ("image digest ok", _set("spec.runtime.image", "gcr.io/p/serving@sha256:" + "a" * 64), set()),
    ("relative base path", _set("spec.model.basePath", "models/fraud"), {("spec.model.basePath", "model-base-path")}),
    ("bad project", _set("spec.project", "Example"), {("spec.project", "project-id")}),
    ("bad region", _set("spec.region", "moon"), {("spec.region", "region")}),
    ("cpu garbage", _set("spec.runtime.resources", {"cpu": "lots"}), {("spec.runtime.resources.cpu", "cpu-quantity")}),
    (
        "cpu below 1 needs concurrency 1",
        lambda o: (
            _set("spec.runtime.resources", {"cpu": "500m", "memory": "1Gi"})(o),
            _set("spec.scaling", {"concurrency": 80})(o),
        ),
        {("spec.scaling.concurrency", "cpu-below-1-concurrency")},
    ),
    (
        "reserved env",
        _set("spec.runtime.env", [{"name": "PORT", "value": "1"}]),
        {("spec.runtime.env[0].name", "env-reserved")},
    ),
    (
        "duplicate env",
        _set("spec.runtime.env", [{"name": "A"}, {"name": "A"}]),
        {("spec.runtime.env[1].name", "env-unique")},
    ),
    (
        "huge env value",
        _set("spec.runtime.env", [{"name": "A", "value": "x" * (32 * 1024 + 1)}]),
        {("spec.runtime.env[0].value", "env-value-size")},
    ),
    (
        "owned flag in args",
        _set("spec.runtime.args", ["--rest_api_port=8500"]),
        {("spec.runtime.args[0]", "owned-flag")},
    ),
    (
        "traffic sum",
        _set("spec.traffic", [{"percent": 50}, {"revision": "fraud-scorer-a", "percent": 40}]),
        {("spec.traffic", "traffic-sum")},
    ),
    (
        "traffic percent range",
        _set("spec.traffic", [{"percent": 101}]),
        {("spec.traffic[0].percent", "schema-maximum"), ("spec.traffic", "traffic-sum")},
    ),
    # B-003: tags must be DNS-1035 labels; unique.
    (
        "tag not dns-1035",
        _set("spec.traffic", [{"percent": 100, "tag": "Canary_1"}]),
        {("spec.traffic[0].tag", "dns-1035-label")},
    ),
    (
        "tag starts with digit",
        _set("spec.traffic", [{"percent": 100, "tag": "1st"}]),
        {("spec.traffic[0].tag", "dns-1035-label")},
    ),
    (
        "duplicate tags",
        _set("spec.traffic", [{"percent": 50, "tag": "a"}, {"revision": "fraud-scorer-x", "percent": 50, "tag": "a"}]),
        {("spec.traffic[1].tag", "tag-unique")},
    ),
    (
        "pinned revision of another service",
        _set("spec.traffic", [{"revision": "other-00001-abc", "percent": 100}]),
        {("spec.traffic[0].revision", "revision-prefix")},
    ),
    (
        "revision and latestRevision",
        _set("spec.traffic", [{"revision": "fraud-scorer-a", "latestRevision": True, "percent": 100}]),
        {("spec.traffic[0].latestRevision", "traffic-target")},
    ),
    (
        "latestRevision false without revision",
        _set("spec.traffic", [{"latestRevision": False, "percent": 100}]),
        {("spec.traffic[0].revision", "traffic-target")},
    ),
    ("spec not an object", _set("spec", "oops"), {("spec", "required")}),
    # B-001: one target without a percent takes 100 (explicitly), never an implicit 0.
    ("single target without percent", _set("spec.traffic", [{"latestRevision": True, "tag": "latest"}]), set()),
    (
        "two targets without percent",
        _set("spec.traffic", [{"tag": "a"}, {"revision": "fraud-scorer-x", "tag": "b"}]),
        {("spec.traffic", "traffic-sum")},
    ),
    (
        "tag URL too long",
        lambda o: (_set("metadata.name", "a" * 40)(o), _set("spec.traffic", [{"percent": 100, "tag": "t" * 10}])(o)),
        {("spec.traffic[0].tag", "tag-url-length")},
    ),
    # CPU / memory matrix
    (
        "cpu 3 not allowed",
        _set("spec.runtime.resources", {"cpu": "3", "memory": "4Gi"}),
        {("spec.runtime.resources.cpu", "cpu-values")},
    ),
    (
        "cpu 2 with 16Gi",
        _set("spec.runtime.resources", {"cpu": "2", "memory": "16Gi"}),
        {("spec.runtime.resources.memory", "cpu-memory")},
    ),
    (
        "cpu 4 with 1Gi",
        _set("spec.runtime.resources", {"cpu": "4", "memory": "1Gi"}),
        {("spec.runtime.resources.memory", "cpu-memory")},
    ),
    (
        "cpu 0.05",
        _set("spec.runtime.resources", {"cpu": "50m", "memory": "256Mi"}),
        {("spec.runtime.resources.cpu", "cpu-values")},
    ),
    (
        "cpu 0.25 with 1Gi",
        _set("spec.runtime.resources", {"cpu": "250m", "memory": "1Gi"}),
        {("spec.runtime.resources.memory", "cpu-memory")},
    ),
    ("cpu 0.5 with 1Gi ok", _set("spec.runtime.resources", {"cpu": "0.5", "memory": "1Gi"}), set()),
    (
        "memory below 128Mi",
        _set("spec.runtime.resources", {"cpu": "1", "memory": "64Mi"}),
        {("spec.runtime.resources.memory", "cpu-memory")},
    ),
    (
        "memory below 128Mi, fractional cpu",
        _set("spec.runtime.resources", {"cpu": "0.5", "memory": "64Mi"}),
        {("spec.runtime.resources.memory", "memory-minimum")},
    ),
    (
        "cpu below 1 with cpu always allocated",
        lambda o: (
            _set("spec.runtime.resources", {"cpu": "500m", "memory": "512Mi"})(o),
            _set("spec.scaling", {"cpuAlwaysAllocated": True})(o),
        ),
        {("spec.scaling.cpuAlwaysAllocated", "cpu-below-1-billing")},
    ),
    # B-032: GPU minimums, CPU always allocated, regions, -gpu image
    ("gpu defaults are valid", _set("spec.runtime", {"gpu": {"type": "nvidia-l4"}}), set()),
    (
        "gpu below minimum",
        _set(
            "spec.runtime",
            {
                "gpu": {"type": "nvidia-l4"},
                "image": "tensorflow/serving:2.19.0-gpu",
                "resources": {"cpu": "2", "memory": "8Gi"},
            },
        ),
        {("spec.runtime.resources.cpu", "gpu-minimum-cpu"), ("spec.runtime.resources.memory", "gpu-minimum-memory")},
    ),
    (
        "gpu with cpu throttling",
        lambda o: (
            _set("spec.runtime", {"gpu": {"type": "nvidia-l4"}})(o),
            _set("spec.scaling", {"cpuAlwaysAllocated": False})(o),
        ),
        {("spec.scaling.cpuAlwaysAllocated", "gpu-cpu-always-allocated")},
    ),
    (
        "gpu in a region without GPUs",
        lambda o: (_set("spec.runtime", {"gpu": {"type": "nvidia-l4"}})(o), _set("spec.region", "us-west1")(o)),
        {("spec.region", "gpu-region")},
    ),
    (
        "gpu with the cpu image",
        _set("spec.runtime", {"gpu": {"type": "nvidia-l4"}, "image": "tensorflow/serving:2.19.0"}),
        {("spec.runtime.image", "gpu-image")},
    ),
    ("unknown gpu", _set("spec.runtime", {"gpu": {"type": "nvidia-h100"}}), {("spec.runtime.gpu.type", "schema-enum")}),
    # labels, annotations, env, probes
    (
        "reserved annotation prefix",
        _set("spec.annotations", {"run.googleapis.com/ingress": "all"}),
        {("spec.annotations.run.googleapis.com/ingress", "reserved-key-prefix")},
    ),
    ("label key with a slash", _set("spec.labels", {"example.com/team": "x"}), {("spec.labels", "label-key")}),
    ("label value uppercase", _set("spec.labels", {"team": "ML"}), {("spec.labels.team", "label-value")}),
    ("owned label", _set("spec.labels", {"managed-by": "me"}), {("spec.labels.managed-by", "owned-label")}),
    (
        "plain credential env (I-010)",
        _set("spec.runtime.env", [{"name": "NGC_API_KEY", "value": "abc"}]),
        {("spec.runtime.env[0].value", "env-plain-credential")},
    ),
    (
        "secret ref ok",
        _set("spec.runtime.env", [{"name": "NGC_API_KEY", "secretKeyRef": {"secret": "s", "version": "2"}}]),
        set(),
    ),
    (
        "startup probe period above 240",
        _set("spec.runtime.startupProbe", {"periodSeconds": 300, "timeoutSeconds": 5}),
        {("spec.runtime.startupProbe.periodSeconds", "probe-startup-limit")},
    ),
    (
        "probe timeout above period",
        _set("spec.runtime.livenessProbe", {"periodSeconds": 5, "timeoutSeconds": 6}),
        {("spec.runtime.livenessProbe.timeoutSeconds", "probe-timeout")},
    ),
    # rollout, access
    (
        "canary steps not increasing",
        _set("spec.rollout", {"strategy": "canary", "steps": [50, 10, 100]}),
        {("spec.rollout.steps", "steps-increasing")},
    ),
    (
        "canary steps not ending at 100",
        _set("spec.rollout", {"strategy": "canary", "steps": [10, 50]}),
        {("spec.rollout.steps", "steps-end-at-100")},
    ),
    (
        "canary with explicit traffic",
        lambda o: (_set("spec.rollout", {"strategy": "canary"})(o), _set("spec.traffic", [{"percent": 100}])(o)),
        {("spec.traffic", "canary-owns-traffic")},
    ),
    (
        "allUsers as invoker",
        _set("spec.access", {"invokers": ["allUsers"]}),
        {("spec.access.invokers[0]", "invoker-member")},
    ),
    (
        "invoker without a type",
        _set("spec.access", {"invokers": ["alice@example.com"]}),
        {("spec.access.invokers[0]", "invoker-member")},
    ),
    (
        "invoker email without a dotted domain (IAM refuses it at SetIamPolicy, after the deploy)",
        _set("spec.access", {"invokers": ["user:a@b", "group:ops@corp", "domain:example"]}),
        {("spec.access.invokers[0]", "invoker-member"), ("spec.access.invokers[1]", "invoker-member"),
         ("spec.access.invokers[2]", "invoker-member")},
    ),
    (
        "canary with an empty step list (would silently mean all at once)",
        _set("spec.rollout", {"strategy": "canary", "steps": []}),
        {("spec.rollout.steps", "steps-empty")},
    ),
    (
        "canary settings without the canary strategy (would be silently ignored)",
        _set("spec.rollout", {"steps": [10, 100], "manualGates": True, "interval": "1m"}),
        {("spec.rollout.steps", "canary-only"), ("spec.rollout.manualGates", "canary-only"),
         ("spec.rollout.interval", "canary-only")},
    ),
    (
        "immediate with an analysis",
        _set("spec.rollout", {"strategy": "immediate", "analysis": {"maxErrorRate": 0.1}}),
        {("spec.rollout.analysis", "canary-only")},
    ),
    (
        "canary step interval beyond 7 days",
        _set("spec.rollout", {"strategy": "canary", "interval": "99999999h"}),
        {("spec.rollout.interval", "interval-range")},
    ),
    (
        "canary step interval below a millisecond",
        _set("spec.rollout", {"strategy": "canary", "interval": "0.0000000000000000000000000001ms"}),
        {("spec.rollout.interval", "interval-range")},
    ),
    (
        "canary step interval of zero",
        _set("spec.rollout", {"strategy": "canary", "interval": "0s"}),
        {("spec.rollout.interval", "interval-range")},
    ),
    (
        "whole floats where integers go (TF Serving: 'Couldn't parse integer: 2.0'; Cloud Run: '60.0s')",
        lambda o: (_set("spec.model.version", 2.0)(o), _set("spec.scaling.timeoutSeconds", 60.0)(o),
                   _set("spec.runtime.batching", {"maxBatchSize": 8.0})(o)),
        {("spec.model.version", "schema-type"), ("spec.scaling.timeoutSeconds", "schema-type"),
         ("spec.runtime.batching.maxBatchSize", "schema-type")},
    ),
    (
        "NaN error-rate limit (every comparison with NaN is false: the check would be off)",
        _set("spec.rollout", {"strategy": "canary", "analysis": {"maxErrorRate": float("nan")}}),
        {("spec.rollout.analysis.maxErrorRate", "finite-number")},
    ),
    (
        "infinite concurrency",
        _set("spec.scaling.concurrency", float("inf")),
        {("spec.scaling.concurrency", "finite-number"), ("spec.scaling.concurrency", "schema-type"),
         ("spec.scaling.concurrency", "schema-maximum")},
    ),
    (
        "env with both a value and a secret (the value would be dropped)",
        _set("spec.runtime.env", [{"name": "DB", "value": "x", "secretKeyRef": {"secret": "db", "version": "1"}}]),
        {("spec.runtime.env[0]", "env-value-or-secret")},
    ),
    (
        "tfms's own state annotations in the spec",
        _set("spec.annotations", {"tfms.dev/rollout": "{}", "tfms.dev/invokers": "[]"}),
        {("spec.annotations.tfms.dev/rollout", "owned-annotation"),
         ("spec.annotations.tfms.dev/invokers", "owned-annotation")},
    ),
    (
        "a spec block at the top level (indented too little)",
        lambda o: o.update(rollout={"strategy": "canary"}, foo=1),
        {("rollout", "unknown-field"), ("foo", "unknown-field")},
    ),
    (
        "unknown metadata field",
        _set("metadata.foo", "bar"),
        {("metadata.foo", "unknown-field")},
    ),
    (
        "name that is not a string",
        _set("metadata.name", 5),
        {("metadata.name", "name-type")},
    ),
    (
        "NUL bytes (the revision could never start)",
        lambda o: (_set("spec.model.basePath", "/tmp/a\x00b")(o),
                   _set("spec.runtime.env", [{"name": "A", "value": "a\x00b"}])(o)),
        {("spec.model.basePath", "nul-character"), ("spec.runtime.env[0].value", "nul-character")},
    ),
    (
        "a quantity with a trailing space (parsed fine, refused by Cloud Run as written)",
        _set("spec.runtime.resources", {"cpu": "2", "memory": "2Gi "}),
        {("spec.runtime.resources.memory", "quantity-whitespace")},
    ),
    (
        "service account not an email",
        _set("spec.serviceAccount", "fraud-sa"),
        {("spec.serviceAccount", "service-account")},
    ),
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
    assert (
        svc.scaling.min_instances,
        svc.scaling.max_instances,
        svc.scaling.concurrency,
        svc.scaling.timeout_seconds,
    ) == (0, 100, 80, 300)
    assert svc.ingress == "all" and svc.traffic == () and svc.deletion_policy == "Delete"


@pytest.mark.parametrize("garbage", [None, 3, "x", [], [1, 2], {"runtime": "x", "scaling": []}])
def test_malformed_specs_never_crash(garbage: Any) -> None:
    obj = base_object()
    obj["spec"] = garbage if not isinstance(garbage, dict) else {**obj["spec"], **garbage}
    errors = validate(obj)
    assert errors and all(e.path.startswith("spec") for e in errors)


MEMBERS = ["user:a@b", "user:a@b.co", "group:ops@corp", "group:ops@corp.example.com",
           "serviceAccount:sa@p.iam.gserviceaccount.com", "serviceAccount:sa@p", "domain:example",
           "domain:example.com", "domain:EXAMPLE.COM", "user:a:b@c.com", "principal://iam.googleapis.com/x",
           "principalSet://iam.googleapis.com/x", "user:@b.com", "user:a@b.", "user:a@.com", "user:a@..c",
           "user:a@b.c/d", "user:a@b-.c0", "principal://x", "user:first.last+ml@corp.example.co.uk",
           "group:o'brien@example.com", "domain:-example.com", "serviceAccount:sa@p.iam.gserviceaccount.com "]


@pytest.mark.parametrize("member", MEMBERS)
def test_invoker_rule_agrees_with_what_cloud_run_iam_accepts(member: str) -> None:
    """validate must refuse exactly what SetIamPolicy would: no deploy that then fails on IAM."""
    from tfms.emulator.iam import member_ok

    obj = base_object(access={"invokers": [member]})
    rules = {(e.path, e.rule) for e in validate(obj)}
    assert (("spec.access.invokers[0]", "invoker-member") not in rules) is member_ok(member)


def test_an_unpinned_default_image_is_blamed_on_its_variable() -> None:
    """The user wrote no image: the error must send them to TFMS_DEFAULT_IMAGE, not their spec."""
    obj = base_object()
    obj["spec"]["runtime"].pop("image", None)
    (err,) = validate(obj, Defaults(project="example-project", image="tensorflow/serving:latest"))
    assert (err.path, err.rule) == ("spec.runtime.image (from TFMS_DEFAULT_IMAGE=tensorflow/serving:latest)",
                                    "image-pinned")
    obj["spec"]["runtime"]["image"] = "tensorflow/serving:latest"
    (err,) = validate(obj, Defaults(project="example-project"))
    assert err.path == "spec.runtime.image"


@pytest.mark.parametrize(("member", "ok"), [
    ("user:first.last+ml@corp.example.co.uk", True), ("group:o'brien@example.com", True),
    ("principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s", True),
    ("user:a@b", False), ("user:a@..c", False), ("user:a@b.c/d", False), ("user:a@b-.c0", False),
    ("principal://x", False), ("domain:example", False), ("user:a b@example.com", False),
])
def test_invoker_members_accepted_and_refused(member: str, ok: bool) -> None:
    rules = {(e.path, e.rule) for e in validate(base_object(access={"invokers": [member]}))}
    assert (("spec.access.invokers[0]", "invoker-member") not in rules) is ok
