"""Knative renders: Knative's own CRD schema, its webhook rules, and Cloud Run v1's annotation levels.

The schema is the `openAPIV3Schema` of `v1` in ../shared/reference/knative-serving/service.yaml,
read in place. jsonschema ignores Kubernetes' `x-kubernetes-*` keywords, and the API server
silently prunes unknown fields rather than rejecting them, so the schema is made strict
(unknown fields are errors) wherever Kubernetes does not preserve unknown fields. The
webhook rules (shared/reference/knative.md) are checked in Python, and the checker itself
is tested against known-bad manifests so a passing render means something.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import SHARED, base_object
from tests.render.test_agreement import KNATIVE_REFUSES, SERVICES, VARIANTS
from tfms.api.errors import SpecInvalid
from tfms.api.model import TFModelService
from tfms.api.validation import parse
from tfms.render import gcloud
from tfms.render.gcloud import render_gcloud
from tfms.render.knative import (
    CLUSTER_LOCAL,
    VISIBILITY_LABEL,
    KnativeUnsupported,
    label_value_ok,
    qualified_name_ok,
    render_knative,
)

HERE = Path(__file__).parent
IMAGE = "tensorflow/serving:2.19.0"
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
KNATIVE_MAX_TIMEOUT = 600  # config-defaults max-revision-timeout-seconds
KNATIVE_RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091}
GOOGLE_PREFIXES = ("run.googleapis.com/", "cloud.googleapis.com/")

RENDERABLE = sorted(n for n in SERVICES if n not in KNATIVE_REFUSES)


def _strict(node: Any) -> Any:
    """The schema with `additionalProperties: false` wherever Kubernetes would not keep unknown fields."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if ("properties" in out and out.get("type") == "object" and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    path = SHARED / "reference" / "knative-serving" / "service.yaml"
    if not path.is_file():
        pytest.fail(f"Knative's Service CRD not found at {path}; set TFMS_SHARED_DIR")
    crd = yaml.safe_load(path.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(v1["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(doc)]


def _metadata_violations(where: str, metadata: dict[str, Any]) -> list[str]:
    out = [f"{where}.labels.{k}: invalid Kubernetes label" for k, v in metadata.get("labels", {}).items()
           if not qualified_name_ok(k) or not isinstance(v, str) or not label_value_ok(v)]
    out += [f"{where}.annotations.{k}: invalid Kubernetes annotation" for k, v in
            metadata.get("annotations", {}).items() if not qualified_name_ok(k) or not isinstance(v, str)]
    return out


def _traffic_violations(traffic: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    total, tags = 0, set()
    for i, target in enumerate(traffic):
        where = f"spec.traffic[{i}]"
        if "percent" not in target:
            out.append(f"{where}: no explicit percent (counts as 0, B-001)")
        percent = target.get("percent", 0)
        if not 0 <= percent <= 100:
            out.append(f"{where}.percent: must be 0-100")
        total += percent
        out += [f"{where}.{key}: not allowed in a Service's spec" for key in ("configurationName", "url")
                if key in target]
        named = bool(target.get("revisionName"))
        if target.get("latestRevision") is not (not named):
            out.append(f"{where}.latestRevision: must be {str(not named).lower()} "
                       f"{'with' if named else 'without'} revisionName")
        tag = target.get("tag")
        if tag is not None:
            if len(tag) > 63 or not DNS1035.match(tag):
                out.append(f"{where}.tag: not a DNS-1035 label (B-003)")
            if tag in tags:
                out.append(f"{where}.tag: duplicate tag {tag!r}")
            tags.add(tag)
    if traffic and total != 100:
        out.append(f"spec.traffic: targets sum to {total}, want 100")
    return out


def _scale_violations(annotations: dict[str, str]) -> list[str]:
    out: list[str] = []
    bounds: dict[str, int] = {}
    for key, value in annotations.items():
        if key.startswith("autoscaling.knative.dev/") and key.rsplit("/", 1)[1] in (
                "min-scale", "max-scale", "minScale", "maxScale"):
            if not value.isdigit():
                out.append(f"{key}: not a non-negative integer")
                continue
            bounds[key.rsplit("/", 1)[1].replace("-s", "S")] = int(value)
    if bounds.get("maxScale", 0) and bounds.get("minScale", 0) > bounds["maxScale"]:
        out.append("min-scale exceeds max-scale")
    return out


def webhook_violations(doc: dict[str, Any], *, plain: bool) -> list[str]:
    """Knative Serving's admission rules (shared/reference/knative.md) that the schema does not carry.

    `plain`: also refuse what only Cloud Run understands (Google keys, a feature-flagged nodeSelector).
    """
    metadata, spec = doc["metadata"], doc["spec"]
    template_metadata, pod = spec["template"]["metadata"], spec["template"]["spec"]
    name = metadata["name"]
    out: list[str] = []
    if len(name) > 63 or not DNS1035.match(name):
        out.append("metadata.name: not a DNS-1035 label")
    out += _metadata_violations("metadata", metadata)
    out += _metadata_violations("spec.template.metadata", template_metadata)
    out += [f"metadata.annotations.{k}: autoscaling annotations go only on the template"
            for k in metadata.get("annotations", {}) if k.startswith("autoscaling.knative.dev/")]
    out += _scale_violations(template_metadata.get("annotations", {}))
    revision = template_metadata.get("name")
    if revision is not None and not (revision.startswith(f"{name}-") and len(revision) <= 63
                                     and DNS1035.match(revision)):
        out.append(f"spec.template.metadata.name: a BYO name is a DNS-1035 label of <= 63 prefixed '{name}-'")
    out += _traffic_violations(spec.get("traffic", []))
    if not 0 <= pod.get("timeoutSeconds", 300) <= KNATIVE_MAX_TIMEOUT:
        out.append("spec.template.spec.timeoutSeconds: above max-revision-timeout-seconds")
    if not 0 <= pod.get("containerConcurrency", 0) <= 1000:
        out.append("spec.template.spec.containerConcurrency: must be 0-1000")
    containers = pod["containers"]
    if len(containers) != 1:
        out.append("spec.template.spec.containers: exactly one serving container")
    for container in containers:
        ports = container.get("ports", [])
        if len(ports) > 1 or any(p.get("name", "http1") not in ("http1", "h2c") for p in ports):
            out.append("ports: at most one, named http1 or h2c")
        out += [f"ports: {p['containerPort']} is reserved by Knative" for p in ports
                if p.get("containerPort") in KNATIVE_RESERVED_PORTS]
    if plain:
        for where, meta in (("metadata", metadata), ("spec.template.metadata", template_metadata)):
            keys = [*meta.get("labels", {}), *meta.get("annotations", {})]
            out += [f"{where}: {k} is a Cloud Run key" for k in keys if k.startswith(GOOGLE_PREFIXES)]
        if "nodeSelector" in pod:
            out.append("spec.template.spec.nodeSelector: needs the kubernetes.podspec-nodeselector flag")
    return out


def _knative(**spec: Any) -> dict[str, Any]:
    return render_knative(parse(base_object(**spec)))


def _gcloud(**spec: Any) -> dict[str, Any]:
    return render_gcloud(parse(base_object(**spec)))


# --- Knative's schema and webhook ------------------------------------------------------------


@pytest.mark.parametrize("name", RENDERABLE)
def test_plain_knative_is_valid_for_knative(name: str) -> None:
    doc = render_knative(SERVICES[name])
    assert schema_errors(doc) == []
    assert webhook_violations(doc, plain=True) == []


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_gcloud_has_knative_shape_and_rules(name: str) -> None:
    """Cloud Run v1 is Knative's API: the same schema and rules hold, Cloud Run keys allowed."""
    doc = render_gcloud(SERVICES[name])
    assert schema_errors(doc) == []
    violations = webhook_violations(doc, plain=False)
    if SERVICES[name].scaling.timeout_seconds > KNATIVE_MAX_TIMEOUT:  # Cloud Run allows up to 3600
        violations.remove("spec.template.spec.timeoutSeconds: above max-revision-timeout-seconds")
    assert violations == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return apply


# (id, mutation of a valid plain render, a fragment of the expected finding): the checks catch
# real mistakes, several of them from shared/cases/bugs.
KNOWN_BAD = [
    ("b001-missing-percent", _set("spec.traffic", [{"tag": "latest", "latestRevision": True}]), "explicit percent"),
    ("sum-not-100", _set("spec.traffic", [{"latestRevision": True, "percent": 90}]), "sum to 90"),
    ("b003-tag-not-dns", _set("spec.traffic", [{"latestRevision": True, "percent": 100, "tag": "@latest"}]),
     "DNS-1035"),
    ("b003-duplicate-tag", _set("spec.traffic", [
        {"revisionName": "fraud-scorer-a", "latestRevision": False, "percent": 50, "tag": "current"},
        {"latestRevision": True, "percent": 50, "tag": "current"}]), "duplicate tag"),
    ("latest-with-revision", _set("spec.traffic", [
        {"revisionName": "fraud-scorer-a", "latestRevision": True, "percent": 100}]), "latestRevision"),
    ("byo-name-unprefixed", _set("spec.template.metadata.name", "scorer-abc"), "prefixed 'fraud-scorer-'"),
    ("byo-name-too-long", _set("spec.template.metadata.name", "fraud-scorer-" + "a" * 51), "<= 63"),
    ("scale-on-service", _set("metadata.annotations", {"autoscaling.knative.dev/min-scale": "1"}),
     "only on the template"),
    ("min-above-max", _set("spec.template.metadata.annotations",
                           {"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/max-scale": "2"}),
     "exceeds"),
    ("timeout-601", _set("spec.template.spec.timeoutSeconds", 601), "max-revision-timeout"),
    ("cloud-run-annotation", _set("spec.template.metadata.annotations",
                                  {"run.googleapis.com/cpu-throttling": "false"}), "Cloud Run key"),
    ("node-selector", _set("spec.template.spec.nodeSelector", {"run.googleapis.com/accelerator": "nvidia-l4"}),
     "nodeSelector"),
    ("reserved-port", _set("spec.template.spec.containers.0.ports", [{"containerPort": 8012}]), "reserved"),
    ("bad-label-value", _set("metadata.labels", {"team": "ml_"}), "invalid Kubernetes label"),
]


@pytest.mark.parametrize(("mutate", "finding"), [(m, f) for _, m, f in KNOWN_BAD], ids=[i for i, _, _ in KNOWN_BAD])
def test_webhook_checker_catches(mutate: Callable[[dict[str, Any]], None], finding: str) -> None:
    doc = copy.deepcopy(render_knative(SERVICES["pinned-canary"]))
    mutate(doc)
    assert any(finding in v for v in webhook_violations(doc, plain=True)), webhook_violations(doc, plain=True)


SCHEMA_BAD = [
    ("unknown-container-field", _set("spec.template.spec.containers.0.cpuIdle", True), "cpuIdle"),
    ("unknown-template-field", _set("spec.template.spec.maxInstanceRequestConcurrency", 80), "maxInstance"),
    ("percent-as-string", _set("spec.traffic.0.percent", "100"), "'100' is not of type 'integer'"),
    ("v2-secret-shape", _set("spec.template.spec.containers.0.env", [
        {"name": "A", "valueSource": {"secretKeyRef": {"secret": "s", "version": "1"}}}]), "valueSource"),
]


@pytest.mark.parametrize(("mutate", "finding"), [(m, f) for _, m, f in SCHEMA_BAD], ids=[i for i, _, _ in SCHEMA_BAD])
def test_strict_schema_catches(mutate: Callable[[dict[str, Any]], None], finding: str) -> None:
    """Without strictness jsonschema accepts v2 field names that Kubernetes would silently drop."""
    doc = copy.deepcopy(render_knative(SERVICES["minimal"]))
    mutate(doc)
    assert any(finding in e for e in schema_errors(doc)), schema_errors(doc)


# --- what plain Knative refuses, drops and maps --------------------------------------------------

GPU_RUNTIME = {"image": f"{IMAGE}-gpu", "gpu": {"type": "nvidia-l4"}}
REFUSED = [
    ("gpu", {"runtime": GPU_RUNTIME}, ["spec.runtime.gpu"]),
    ("timeout-601", {"scaling": {"timeoutSeconds": 601}}, ["spec.scaling.timeoutSeconds"]),
    ("ingress-none", {"access": {"ingress": "none"}}, ["spec.access.ingress"]),
    ("other-project-secret", {"runtime": {"image": IMAGE, "env": [
        {"name": "TOKEN", "secretKeyRef": {"secret": "projects/partner/secrets/token"}}]}},
     ["spec.runtime.env[0].secretKeyRef.secret"]),
    ("secret-name-not-dns", {"runtime": {"image": IMAGE, "env": [
        {"name": "NGC_API_KEY", "secretKeyRef": {"secret": "NGC_API_KEY"}}]}},
     ["spec.runtime.env[0].secretKeyRef.secret"]),
    ("label-value-not-k8s", {"labels": {"team": "ml_"}}, ["spec.labels.team"]),
    ("annotation-key-not-k8s", {"annotations": {"owner team": "ml"}}, ["spec.annotations.owner team"]),
    ("all-at-once", {"runtime": GPU_RUNTIME, "scaling": {"timeoutSeconds": 3600}},
     ["spec.runtime.gpu", "spec.scaling.timeoutSeconds"]),
]


@pytest.mark.parametrize(("spec", "paths"), [(s, p) for _, s, p in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_plain_knative_refuses(spec: dict[str, Any], paths: list[str]) -> None:
    svc = parse(base_object(**spec))
    with pytest.raises(KnativeUnsupported) as refused:
        render_knative(svc)
    assert [p.path for p in refused.value.problems] == paths
    assert isinstance(refused.value, ValueError)
    assert all(path in str(refused.value) for path in paths)
    render_gcloud(svc)  # Cloud Run itself takes every one of them


@pytest.mark.parametrize(("timeout", "limit", "ok"), [(600, 600, True), (601, 600, False), (900, 900, True),
                                                      (3600, 3600, True), (3600, 900, False)])
def test_timeout_limit_follows_the_cluster(timeout: int, limit: int, ok: bool) -> None:
    """An admin may raise max-revision-timeout-seconds; the caller says so."""
    svc = parse(base_object(scaling={"timeoutSeconds": timeout}))
    if ok:
        doc = render_knative(svc, max_revision_timeout_seconds=limit)
        assert doc["spec"]["template"]["spec"]["timeoutSeconds"] == timeout
    else:
        with pytest.raises(KnativeUnsupported, match="timeoutSeconds"):
            render_knative(svc, max_revision_timeout_seconds=limit)


@pytest.mark.parametrize(("ingress", "visibility", "v1_value"), [
    ("all", None, "all"),
    ("internal", CLUSTER_LOCAL, "internal"),
    ("internal-and-cloud-load-balancing", CLUSTER_LOCAL, "internal-and-cloud-load-balancing"),
    ("none", "refused", "none"),
])
def test_ingress(ingress: str, visibility: str | None, v1_value: str) -> None:
    svc = parse(base_object(access={"ingress": ingress}))
    assert render_gcloud(svc)["metadata"]["annotations"][gcloud.INGRESS] == v1_value
    if visibility == "refused":
        with pytest.raises(KnativeUnsupported):
            render_knative(svc)
        return
    assert render_knative(svc)["metadata"]["labels"].get(VISIBILITY_LABEL) == visibility


@pytest.mark.parametrize(("account", "v1_name", "knative_name"), [
    ("", None, None),
    ("fraud-sa@example-project.iam.gserviceaccount.com", "fraud-sa@example-project.iam.gserviceaccount.com",
     "fraud-sa"),
    ("123456789012-compute@developer.gserviceaccount.com", "123456789012-compute@developer.gserviceaccount.com",
     "123456789012-compute"),
])
def test_service_account(account: str, v1_name: str | None, knative_name: str | None) -> None:
    """Cloud Run takes the Google account; Knative the Kubernetes account bound to it (Workload Identity)."""
    spec = {"serviceAccount": account} if account else {}
    assert _gcloud(**spec)["spec"]["template"]["spec"].get("serviceAccountName") == v1_name
    assert _knative(**spec)["spec"]["template"]["spec"].get("serviceAccountName") == knative_name


@pytest.mark.parametrize("name", RENDERABLE)
def test_plain_knative_drops_cloud_run_only_settings(name: str) -> None:
    doc = render_knative(SERVICES[name])
    text = yaml.safe_dump(doc)
    assert "googleapis.com/" not in text.replace("gserviceaccount.com", "")
    assert "invoker" not in text and "cpu-throttling" not in text and "startup-cpu-boost" not in text
    assert doc["metadata"]["namespace"] == SERVICES[name].namespace


# --- Cloud Run v1 (gcloud) annotation levels -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_gcloud_keys_at_the_level_cloud_run_reads(name: str) -> None:
    svc = SERVICES[name]
    doc = render_gcloud(svc)
    service = doc["metadata"]["annotations"]
    revision = doc["spec"]["template"]["metadata"]["annotations"]
    ours = ("run.googleapis.com/", "autoscaling.knative.dev/")
    assert {k for k in service if k.startswith(ours)} <= gcloud.SERVICE_ANNOTATIONS
    assert {k for k in revision if k.startswith(ours)} <= gcloud.REVISION_ANNOTATIONS
    assert doc["metadata"]["namespace"] == svc.project
    assert doc["metadata"]["labels"][gcloud.LOCATION_LABEL] == svc.region
    assert (gcloud.INVOKER_IAM_DISABLED in service) == svc.access.public
    assert (gcloud.GPU_ZONAL_REDUNDANCY_DISABLED in revision) == (svc.runtime.gpu is not None)


@pytest.mark.parametrize(("always_allocated", "boost", "throttling", "boost_value"), [
    (False, True, "true", "true"), (True, True, "false", "true"), (True, False, "false", "false"),
    (False, False, "true", "false"),
])
def test_gcloud_cpu_annotations(always_allocated: bool, boost: bool, throttling: str, boost_value: str) -> None:
    doc = _gcloud(scaling={"cpuAlwaysAllocated": always_allocated, "startupCpuBoost": boost})
    revision = doc["spec"]["template"]["metadata"]["annotations"]
    assert (revision[gcloud.CPU_THROTTLING], revision[gcloud.STARTUP_CPU_BOOST]) == (throttling, boost_value)


def test_gcloud_aliases_other_projects_secrets() -> None:
    """v1 refers to another project's secret by an alias mapped in `run.googleapis.com/secrets`."""
    doc = render_gcloud(parse(VARIANTS["cross-project-secrets"]))
    annotations = doc["spec"]["template"]["metadata"]["annotations"]
    assert annotations[gcloud.SECRETS] == ("api-token-2:projects/partner-a/secrets/api-token,"
                                           "api-token-3:projects/partner-b/secrets/api-token")
    refs = [v["valueFrom"]["secretKeyRef"] for v in doc["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert refs == [{"name": "api-token", "key": "1"}, {"name": "api-token-2", "key": "latest"},
                    {"name": "api-token-3", "key": "2"}]


def test_gcloud_gpu_matches_cloud_runs_own_yaml() -> None:
    """I-010 / B-032: the keys a working Cloud Run GPU manifest uses, at the same levels."""
    (path,) = (SHARED / "cases" / "inputs").glob("010-*.yaml")
    theirs = yaml.safe_load(path.read_text())
    ours = render_gcloud(SERVICES["gpu-batching-secrets"])
    their_template, our_template = theirs["spec"]["template"], ours["spec"]["template"]
    for key, value in their_template["metadata"]["annotations"].items():
        assert our_template["metadata"]["annotations"][key] == value, key
        assert key not in ours["metadata"]["annotations"]
    assert our_template["spec"]["nodeSelector"] == their_template["spec"]["nodeSelector"]
    their_limits = their_template["spec"]["containers"][0]["resources"]["limits"]
    assert our_template["spec"]["containers"][0]["resources"]["limits"] == their_limits


# --- traffic and revision names ------------------------------------------------------------------


def _knative_traffic_cases() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for prefix in ("005", "006", "008"):
        (path,) = (SHARED / "cases" / "inputs").glob(f"{prefix}-*.yaml")
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        out += [(f"{prefix}{'-' + 'ABC'[i] if len(docs) > 1 else ''}", d) for i, d in enumerate(docs)]
    return out


# Real Knative manifests' traffic blocks (I-005, I-006, I-008): as a TFModelService spec, each
# renders back to the same block. 008-B pins the revision `example-service`, which is not
# `{service}-...`: tfms refuses it up front, as Knative would refuse it as a BYO name.
TRAFFIC_CASES = _knative_traffic_cases()
TRAFFIC_REFUSED = {"008-B": "revision-prefix"}


@pytest.mark.parametrize("doc", [d for _, d in TRAFFIC_CASES], ids=[i for i, _ in TRAFFIC_CASES])
def test_real_knative_traffic_blocks_round_trip(doc: dict[str, Any], request: pytest.FixtureRequest) -> None:
    case_id = request.node.callspec.id
    traffic = [{"revision": t["revisionName"]} if "revisionName" in t else {"latestRevision": True}
               for t in doc["spec"]["traffic"]]
    for ours, theirs in zip(traffic, doc["spec"]["traffic"], strict=True):
        ours.update({k: theirs[k] for k in ("percent", "tag") if k in theirs})
    obj = base_object(traffic=traffic)
    obj["metadata"]["name"] = doc["metadata"]["name"]
    if case_id in TRAFFIC_REFUSED:
        with pytest.raises(SpecInvalid, match=TRAFFIC_REFUSED[case_id]):
            parse(obj)
        return
    rendered = render_knative(parse(obj))
    expected = [{**t, "latestRevision": "revisionName" not in t} for t in doc["spec"]["traffic"]]
    assert rendered["spec"]["traffic"] == expected
    assert webhook_violations(rendered, plain=True) == []


def test_b001_single_target_gets_an_explicit_percent() -> None:
    doc = _knative(traffic=[{"latestRevision": True, "tag": "latest"}])
    assert doc["spec"]["traffic"] == [{"tag": "latest", "latestRevision": True, "percent": 100}]
    assert _knative()["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]


def _without_name(doc: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = copy.deepcopy(doc["spec"]["template"])
    del template["metadata"]["name"]
    return template


@pytest.mark.parametrize("render", [render_knative, render_gcloud], ids=["knative", "gcloud"])
def test_b006_byo_name_changes_exactly_when_the_template_does(render: Callable[[TFModelService],
                                                                                dict[str, Any]]) -> None:
    """Knative rejects a changed template under an old name; an unchanged one must keep it."""
    docs = [render(SERVICES[name]) for name in RENDERABLE if name.startswith("variant:")]
    seen: dict[str, dict[str, Any]] = {}
    for doc in docs:
        name = doc["spec"]["template"]["metadata"]["name"]
        template = _without_name(doc)
        if name in seen:
            assert seen[name] == template, name
        seen[name] = template
    templates = [_without_name(d) for d in docs]
    distinct = [t for i, t in enumerate(templates) if t not in templates[:i]]
    assert len(seen) == len(distinct)


def test_rendering_is_pure() -> None:
    svc = SERVICES["pinned-canary"]
    assert render_knative(svc) == render_knative(svc) and render_gcloud(svc) == render_gcloud(svc)
