"""One validator for every path: `tfms validate`, the reconciler, and admission.

All errors are reported at once, each with its field path, the rule and the value, and
nothing here does I/O, so a bad spec is refused before any API call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, Final, TypeGuard

import jsonschema

from tfms.api import names
from tfms.api.defaults import Defaults, with_defaults
from tfms.api.errors import FieldError, SpecInvalid
from tfms.api.model import EnvVar, ModelSpec, RuntimeSpec, ScalingSpec, TFModelService, TrafficTarget
from tfms.api.quantities import parse_cpu, parse_memory
from tfms.api.schema import SPEC_SCHEMA

PROJECT_RE: Final = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
REGION_RE: Final = re.compile(r"^[a-z]+-[a-z]+\d+$")
_DIGEST_RE: Final = re.compile(r"@sha256:[0-9a-f]{64}$")
# Flags whose values tfms derives from the spec; a user copy would silently win (last flag wins).
OWNED_FLAGS: Final = (
    "--port", "--rest_api_port", "--model_name", "--model_base_path", "--model_config_file",
)
# Set by Cloud Run itself, or by tfms for TF Serving.
RESERVED_ENV: Final = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", names.MODEL_CONFIG_ENV})
ENV_VALUE_MAX: Final = 32 * 1024


@lru_cache(maxsize=1)
def _spec_validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(SPEC_SCHEMA)
    cls.check_schema(SPEC_SCHEMA)
    return cls(SPEC_SCHEMA)  # type: ignore[no-any-return]


def _path(prefix: str, parts: Any) -> str:
    out = prefix
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _schema_errors(spec: Any) -> Iterator[FieldError]:
    for err in _spec_validator().iter_errors(spec):
        rule = str(err.validator)
        if rule == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            for key in extra:
                yield FieldError(_path("spec", [*err.absolute_path, key]), "unknown-field",
                                 "field is not part of TFModelService")
            continue
        if rule == "required":
            missing = str(err.message).split("'")[1] if "'" in err.message else ""
            yield FieldError(_path("spec", [*err.absolute_path, missing]), "required", "field is required")
            continue
        yield FieldError(_path("spec", err.absolute_path), f"schema-{rule}", err.message.split("\n")[0],
                         err.instance if not isinstance(err.instance, (dict, list)) else None)


def _is_dict(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict)


def _name_errors(name: Any) -> Iterator[FieldError]:
    if not isinstance(name, str) or not name:
        yield FieldError("metadata.name", "required", "a name is required")
        return
    if len(name) > names.SERVICE_ID_MAX:
        yield FieldError("metadata.name", "service-id-length",
                         f"Cloud Run service IDs must be fewer than 50 characters ({len(name)})", name)
    if not names.SERVICE_ID_RE.match(name):
        yield FieldError("metadata.name", "service-id-format",
                         "must start with a letter, use only lowercase letters, digits and '-', "
                         "and not end with '-'", name)


def image_errors(image: str, path: str = "spec.runtime.image") -> Iterator[FieldError]:
    """An image must be pinned: an exact tag or a digest, never `latest` or no tag at all."""
    if _DIGEST_RE.search(image):
        return
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        yield FieldError(path, "image-pinned", "image has no tag, which means 'latest'; pin a version "
                         "or digest", image)
    elif last.rsplit(":", 1)[1] == "latest" or last.rsplit(":", 1)[1].startswith("latest-"):
        yield FieldError(path, "image-pinned", "image tag 'latest' is not pinned; use a version or digest",
                         image)


def _traffic_errors(service_id: str, traffic: list[Any]) -> Iterator[FieldError]:
    if not traffic:
        return
    total = 0
    tags: dict[str, int] = {}
    for i, target in enumerate(traffic):
        if not _is_dict(target):
            continue
        path = f"spec.traffic[{i}]"
        percent = target.get("percent", 0)
        total += percent if isinstance(percent, int) else 0
        revision = target.get("revision", "")
        latest = target.get("latestRevision")
        if revision and latest is True:
            yield FieldError(f"{path}.latestRevision", "traffic-target",
                             "latestRevision must be false (or absent) when revision is set")
        if not revision and latest is False:
            yield FieldError(f"{path}.revision", "traffic-target",
                             "name a revision, or set latestRevision: true")
        if isinstance(revision, str) and revision:
            if not revision.startswith(f"{service_id}-"):
                yield FieldError(f"{path}.revision", "revision-prefix",
                                 f"revision names of this service start with '{service_id}-'", revision)
            if len(revision) > names.DNS1035_MAX or not names.DNS1035_RE.match(revision):
                yield FieldError(f"{path}.revision", "dns-1035-label",
                                 "must be a DNS-1035 label of at most 63 characters", revision)
        tag = target.get("tag", "")
        if isinstance(tag, str) and tag:
            if len(tag) > names.DNS1035_MAX or not names.DNS1035_RE.match(tag):
                yield FieldError(f"{path}.tag", "dns-1035-label",
                                 "tags must be DNS-1035 labels: a lowercase letter first, then lowercase "
                                 "letters, digits or '-', not ending with '-'", tag)
            if tag in tags:
                yield FieldError(f"{path}.tag", "tag-unique",
                                 f"tag already used by spec.traffic[{tags[tag]}]", tag)
            tags.setdefault(tag, i)
    if total != 100:
        yield FieldError("spec.traffic", "traffic-sum", "percentages must sum to exactly 100", total)


def _runtime_errors(spec: Mapping[str, Any]) -> Iterator[FieldError]:
    runtime = spec.get("runtime")
    if not _is_dict(runtime):
        return
    image = runtime.get("image")
    if isinstance(image, str) and image:
        yield from image_errors(image)
    resources = runtime.get("resources")
    cpu_value = None
    if _is_dict(resources):
        cpu = resources.get("cpu")
        if isinstance(cpu, str):
            cpu_value = parse_cpu(cpu)
            if cpu_value is None or cpu_value <= 0:
                yield FieldError("spec.runtime.resources.cpu", "cpu-quantity",
                                 "must be a CPU quantity such as \"1\", \"2\" or \"500m\"", cpu)
        memory = resources.get("memory")
        if isinstance(memory, str) and (parse_memory(memory) or 0) <= 0:
            yield FieldError("spec.runtime.resources.memory", "memory-quantity",
                             "must be a memory quantity such as 512Mi or 2Gi", memory)
    scaling = spec.get("scaling")
    if cpu_value is not None and cpu_value < 1 and _is_dict(scaling) and scaling.get("concurrency", 1) != 1:
        yield FieldError("spec.scaling.concurrency", "cpu-below-1-concurrency",
                         "Cloud Run requires concurrency 1 when CPU is below 1",
                         scaling.get("concurrency"))
    env = runtime.get("env")
    if isinstance(env, list):
        seen: set[str] = set()
        for i, var in enumerate(env):
            if not _is_dict(var) or not isinstance(var.get("name"), str):
                continue
            name = var["name"]
            if name in RESERVED_ENV:
                yield FieldError(f"spec.runtime.env[{i}].name", "env-reserved",
                                 "this variable is set by Cloud Run or tfms", name)
            if name in seen:
                yield FieldError(f"spec.runtime.env[{i}].name", "env-unique", "duplicate variable", name)
            seen.add(name)
            value = var.get("value", "")
            if isinstance(value, str) and len(value.encode()) > ENV_VALUE_MAX:
                yield FieldError(f"spec.runtime.env[{i}].value", "env-value-size",
                                 "a value may be at most 32 KiB", len(value.encode()))
    args = runtime.get("args")
    if isinstance(args, list):
        for i, arg in enumerate(args):
            if isinstance(arg, str) and arg.split("=", 1)[0] in OWNED_FLAGS:
                yield FieldError(f"spec.runtime.args[{i}]", "owned-flag",
                                 "tfms sets this flag from the spec (a later copy would override it)", arg)


def _semantic_errors(service_id: str, spec: Mapping[str, Any]) -> Iterator[FieldError]:
    project = spec.get("project")
    if isinstance(project, str):
        if not project:
            yield FieldError("spec.project", "required", "set spec.project or TFMS_PROJECT")
        elif not PROJECT_RE.match(project):
            yield FieldError("spec.project", "project-id",
                             "a project ID is 6-30 lowercase letters, digits or '-', starting with a letter",
                             project)
    region = spec.get("region")
    if isinstance(region, str) and not REGION_RE.match(region):
        yield FieldError("spec.region", "region", "must be a Cloud Run region such as us-central1", region)
    model = spec.get("model")
    if _is_dict(model):
        base = model.get("basePath")
        if isinstance(base, str) and base and not (base.startswith("gs://") or base.startswith("/")):
            yield FieldError("spec.model.basePath", "model-base-path",
                             "must be gs://bucket/path or an absolute path", base)
    yield from _runtime_errors(spec)
    scaling = spec.get("scaling")
    if _is_dict(scaling):
        lo, hi = scaling.get("minInstances"), scaling.get("maxInstances")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            yield FieldError("spec.scaling.minInstances", "min-le-max",
                             f"must not exceed maxInstances ({hi})", lo)
    traffic = spec.get("traffic")
    if isinstance(traffic, list):
        yield from _traffic_errors(service_id, traffic)


def validate(obj: Mapping[str, Any], defaults: Defaults | None = None) -> list[FieldError]:
    """Every rule the object breaks, sorted by field path; empty when it is valid."""
    errors: list[FieldError] = []
    if obj.get("apiVersion") != names.API_VERSION:
        errors.append(FieldError("apiVersion", "api-version", f"must be {names.API_VERSION}",
                                 obj.get("apiVersion")))
    if obj.get("kind") != names.KIND:
        errors.append(FieldError("kind", "kind", f"must be {names.KIND}", obj.get("kind")))
    metadata = obj.get("metadata")
    metadata = metadata if _is_dict(metadata) else {}
    service_id = metadata.get("name")
    errors.extend(_name_errors(service_id))
    spec = obj.get("spec")
    if not _is_dict(spec):
        errors.append(FieldError("spec", "required", "spec must be an object", None))
        return sorted(set(errors))
    errors.extend(_schema_errors(spec))
    defaulted = with_defaults(spec, defaults or Defaults())
    errors.extend(_semantic_errors(service_id if isinstance(service_id, str) else "", defaulted))
    return sorted(set(errors))


def parse(obj: Mapping[str, Any], defaults: Defaults | None = None, source: str = "") -> TFModelService:
    """The typed service, or `SpecInvalid` listing every broken rule."""
    defaults = defaults or Defaults()
    errors = validate(obj, defaults)
    if errors:
        raise SpecInvalid(errors, source)
    metadata = obj["metadata"]
    spec = with_defaults(obj["spec"], defaults)
    model, runtime, scaling = spec["model"], spec["runtime"], spec["scaling"]
    return TFModelService(
        name=metadata["name"],
        namespace=metadata.get("namespace", "") or "default",
        project=spec["project"],
        region=spec["region"],
        model=ModelSpec(
            name=model["name"], base_path=model["basePath"], version=model.get("version"),
            signature_name=model.get("signatureName", ""),
        ),
        runtime=RuntimeSpec(
            image=runtime["image"], cpu=runtime["resources"]["cpu"], memory=runtime["resources"]["memory"],
            env=tuple(EnvVar(v["name"], v.get("value", "")) for v in runtime["env"]),
            args=tuple(runtime["args"]),
        ),
        scaling=ScalingSpec(
            min_instances=scaling["minInstances"], max_instances=scaling["maxInstances"],
            concurrency=scaling["concurrency"], timeout_seconds=scaling["timeoutSeconds"],
        ),
        service_account=spec.get("serviceAccount", ""),
        ingress=spec["access"]["ingress"],
        traffic=tuple(
            TrafficTarget(percent=t.get("percent", 0), revision=t.get("revision", ""), tag=t.get("tag", ""))
            for t in spec["traffic"]
        ),
        deletion_policy=spec["deletionPolicy"],
        generation=int(metadata.get("generation", 0) or 0),
    )
