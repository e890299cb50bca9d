"""One validator for every path: `tfms validate`, the reconciler, and admission.

All errors are reported at once, each with its field path, the rule and the value, and
nothing here does I/O, so a bad spec is refused before any API call.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace as dc_replace
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, TypeGuard

import jsonschema

from tfms.api import limits, names
from tfms.api.defaults import Defaults, with_defaults
from tfms.api.durations import parse_duration
from tfms.api.errors import FieldError, SpecInvalid
from tfms.api.model import (
    AccessSpec,
    Analysis,
    Batching,
    EnvVar,
    Gpu,
    ModelSpec,
    Monitoring,
    Probe,
    RolloutSpec,
    RuntimeSpec,
    ScalingSpec,
    SecretRef,
    TFModelService,
    TrafficTarget,
)
from tfms.api.quantities import parse_cpu, parse_memory
from tfms.api.schema import DURATION_PATTERN, MESSAGE, RULE, SPEC_SCHEMA

_DIGEST_RE: Final = re.compile(r"@sha256:[0-9a-f]{64}$")
# The container image reference grammar (github.com/distribution/reference): [host[:port]/]path[:tag][@digest].
_IMAGE_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_LABEL: Final = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_IMAGE_HOST: Final = rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*(?::[0-9]+)?/)"
IMAGE_REFERENCE_RE: Final = re.compile(
    rf"^{_IMAGE_HOST}?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")
# A Cloud Storage bucket name: lowercase letters, digits, '-', '_' and '.', starting and ending alphanumeric.
_BUCKET_RE: Final = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
# Flags whose values tfms derives from the spec; a user copy would silently win (last flag wins).
OWNED_FLAGS: Final = (
    "--port", "--rest_api_port", "--model_name", "--model_base_path", "--model_config_file",
    "--enable_batching", "--batching_parameters_file", "--monitoring_config_file", "--enable_model_warmup",
)
# Where each owned flag is set in the spec, for the error message.
_OWNED_FLAG_FIELDS: Final = {
    "--model_name": "spec.model.name", "--model_base_path": "spec.model.basePath",
    "--model_config_file": "spec.model.version and spec.model.versionLabels",
    "--enable_batching": "spec.runtime.batching", "--batching_parameters_file": "spec.runtime.batching",
    "--monitoring_config_file": "spec.runtime.monitoring", "--enable_model_warmup": "spec.runtime.warmup",
}
# The first TF Serving release whose REST API routes /labels/ paths [inferred from the release
# history around tensorflow/serving#1555; older servers only take labels over gRPC].
REST_LABELS_MIN_VERSION: Final = (2, 3)
MIN_STEP_INTERVAL_S: Final = 0.001
MAX_STEP_INTERVAL_S: Final = 7 * 24 * 3600  # longer is a typo ('5h' for '5m'), not a rollout plan
_TF_SERVING_TAG: Final = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?(?:-[a-z0-9-]+)?$")
# Set by Cloud Run itself, or by tfms for TF Serving.
RESERVED_ENV: Final = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", names.MODEL_CONFIG_ENV})


@lru_cache(maxsize=1)
def _spec_validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(SPEC_SCHEMA)
    cls.check_schema(SPEC_SCHEMA)
    # JSON Schema counts 2.0 as an integer; TF Serving's config parser and Cloud Run's durations do
    # not ('Couldn't parse integer: 2.0', '60.0s'), so a whole float must be refused here.
    strict = cls.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(cls, type_checker=strict)(SPEC_SCHEMA)  # type: ignore[no-any-return]


def _unrepresentable(value: Any, path: str) -> Iterator[FieldError]:
    """Values no schema keyword catches. NaN and infinities ('.nan', '.inf') slip past minimum and
    maximum (every comparison with NaN is false: maxErrorRate: .nan would switch the check off);
    a NUL byte cannot be in a process argument or an environment value, so the revision never starts."""
    if isinstance(value, float) and not math.isfinite(value):
        yield FieldError(path, "finite-number", "must be a finite number", str(value))
    elif isinstance(value, str) and "\x00" in value:
        yield FieldError(path, "nul-character", "must not contain a NUL character (no command line or "
                         "environment can carry one)")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unrepresentable(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unrepresentable(item, f"{path}[{i}]")


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
        value = err.instance if not isinstance(err.instance, (dict, list)) else None
        named = err.schema.get(RULE) if isinstance(err.schema, dict) else None
        if named and rule != "type":
            yield FieldError(_path("spec", err.absolute_path), named, err.schema[MESSAGE], value)
            continue
        yield FieldError(_path("spec", err.absolute_path), f"schema-{rule}", err.message.split("\n")[0], value)


def _is_dict(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict)


def _namespace_errors(namespace: Any) -> Iterator[FieldError]:
    """A namespace is a DNS-1123 label (Kubernetes' rule); tfms also writes it into a Cloud Run label."""
    if namespace is None or namespace == "":
        return
    if (not isinstance(namespace, str) or len(namespace) > names.DNS1123_LABEL_MAX
            or not names.DNS1123_LABEL_RE.match(namespace)):
        yield FieldError("metadata.namespace", "dns-1123-label",
                         "must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', "
                         "starting and ending with a letter or digit", namespace)


_TOP_LEVEL: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_OBJECT_META: Final = frozenset({
    "name", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences", "managedFields",
    "generateName", "selfLink"})


def _unknown_outside_spec(obj: Mapping[str, Any], metadata: Mapping[str, Any]) -> Iterator[FieldError]:
    """A block indented one level too little (a top-level `rollout:`) would otherwise be dropped
    without a word, and the change would go out at 100% at once."""
    spec_fields = SPEC_SCHEMA.get("properties", {})
    for key in obj:
        if key not in _TOP_LEVEL:
            hint = f"; did you mean spec.{key}?" if key in spec_fields else ""
            yield FieldError(_key(key), "unknown-field", f"field is not part of TFModelService{hint}")
    for key in metadata:
        if key not in _OBJECT_META:
            yield FieldError(f"metadata.{_key(key)}", "unknown-field",
                             "field is not part of Kubernetes object metadata")


def _key(key: Any) -> str:
    """A mapping key as a path element: an empty, blank or non-string key shown quoted."""
    return key if isinstance(key, str) and key.strip() == key and key else repr(key)


def _name_errors(name: Any) -> Iterator[FieldError]:
    if name is not None and not isinstance(name, str):
        yield FieldError("metadata.name", "name-type", "must be a string", name)
        return
    if not name:
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
    """An image must be a valid reference (checked first, so a malformed one is not mistaken for an
    untagged one) and pinned: an exact tag or a digest, never `latest` or no tag at all."""
    if not IMAGE_REFERENCE_RE.match(image):
        yield FieldError(path, "image-reference", "not a valid image reference; expected "
                         "[REGISTRY/]REPOSITORY:TAG or REPOSITORY@sha256:DIGEST", image)
        return
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
            length = limits.tag_host_label_length(tag, service_id)
            if names.DNS1035_RE.match(tag) and length > names.DNS1035_MAX:
                yield FieldError(f"{path}.tag", "tag-url-length",
                                 f"the tag URL's host label TAG---SERVICE-HASH-REGION would be {length} characters "
                                 f"(a DNS label holds 63); shorten the tag or the service name", tag)
            if tag in tags:
                yield FieldError(f"{path}.tag", "tag-unique",
                                 f"tag already used by spec.traffic[{tags[tag]}]", tag)
            tags.setdefault(tag, i)
    if total != 100:
        yield FieldError("spec.traffic", "traffic-sum", "percentages must sum to exactly 100", total)


CREDENTIAL_NAME: Final = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_?KEY|ACCESS_?KEY)",
                                    re.I)
# Values that are credentials whatever the variable is called: (rule, what it looks like, pattern).
CREDENTIAL_VALUES: Final = (
    ("env-private-key", "a PEM private key",
     re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("env-service-account-key", "a Google service account key file",
     re.compile(r'"type"\s*:\s*"service_account"|"private_key(?:_id)?"\s*:')),
    ("env-gcp-api-key", "a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("env-aws-access-key", "an AWS access key ID", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("env-aws-secret-key", "an AWS secret access key",
     re.compile(r"aws_secret_access_key\s{0,8}[=:]\s{0,8}[A-Za-z0-9/+]{40}", re.I)),
    ("env-token", "an access token (GitHub, Slack or a Google OAuth token)",
     re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|xox[abposr]-[A-Za-z0-9-]{10,}|ya29\.[0-9A-Za-z_-]{20,})")),
    ("env-url-password", "a URL with an embedded password",
     # Every repeat is bounded (a scheme is short, user and password are one URL part each), so a
     # megabyte of 'x' is scanned in linear time, not tried from every position to its end.
     re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://[^/\s:@]{1,256}:[^/\s@]{1,256}@", re.I)),
    ("env-password-assignment", "a literal password assignment",
     re.compile(r"(?:password|passwd|secret|token|api_?key)\s{0,8}[=:]\s{0,8}\S{4}", re.I)),
)


def credential_errors(path: str, name: str, value: str) -> Iterator[FieldError]:
    """A plain env value that is, or is named like, a credential: secrets reach the model only as
    Secret Manager references (`secretKeyRef`), never as values stored in the service spec."""
    advice = "reference it from Secret Manager with secretKeyRef instead of a plain value"
    for rule, what, pattern in CREDENTIAL_VALUES:
        if pattern.search(value):
            yield FieldError(path, rule, f"the value looks like {what}: {advice}", name)
            return
    if CREDENTIAL_NAME.search(name):
        yield FieldError(path, "env-plain-credential", f"this looks like a credential: {advice}", name)


def _resource_errors(runtime: Mapping[str, Any], scaling: Mapping[str, Any], region: Any) -> Iterator[FieldError]:
    """Cloud Run's CPU/memory matrix, CPU below 1, and GPU minimums."""
    resources = runtime.get("resources")
    if not _is_dict(resources):
        return
    cpu_text, mem_text = resources.get("cpu"), resources.get("memory")
    cpu = parse_cpu(cpu_text) if isinstance(cpu_text, str) else None
    memory = parse_memory(mem_text) if isinstance(mem_text, str) else None
    gpu = runtime.get("gpu")
    gpu_kind = limits.GPU_KINDS.get(gpu.get("type", "")) if _is_dict(gpu) else None
    cpu_path, mem_path = "spec.runtime.resources.cpu", "spec.runtime.resources.memory"
    for path, text in ((cpu_path, cpu_text), (mem_path, mem_text)):
        if isinstance(text, str) and text != text.strip():  # Cloud Run refuses '2Gi ' as written
            yield FieldError(path, "quantity-whitespace", "must not begin or end with spaces", text)
    if isinstance(cpu_text, str) and (cpu is None or cpu <= 0):
        yield FieldError(cpu_path, "cpu-quantity", "must be a CPU quantity such as \"1\", \"2\" or \"500m\"", cpu_text)
        cpu = None
    if isinstance(mem_text, str) and (memory is None or memory <= 0):
        yield FieldError(mem_path, "memory-quantity", "must be a memory quantity such as 512Mi or 2Gi", mem_text)
        memory = None
    if cpu is not None:
        whole = {**limits.WHOLE_CPU_MEMORY, **(limits.GPU_ONLY_CPU_MEMORY if gpu_kind else {})}
        if cpu < 1:
            if cpu < limits.FRACTIONAL_CPU_MIN or cpu != cpu.quantize(Decimal("0.001")):
                yield FieldError(cpu_path, "cpu-values", "below 1 vCPU, CPU is 0.08 to 0.999 in steps of 0.001",
                                 cpu_text)
            elif memory is not None and memory > limits.fractional_memory_max(cpu):
                yield FieldError(mem_path, "cpu-memory", f"at most {_size(limits.fractional_memory_max(cpu))} "
                                 f"with {cpu_text} vCPU", mem_text)
            if scaling.get("concurrency", 1) != 1:
                yield FieldError("spec.scaling.concurrency", "cpu-below-1-concurrency",
                                 "Cloud Run requires concurrency 1 when CPU is below 1", scaling.get("concurrency"))
            if scaling.get("cpuAlwaysAllocated") is True:
                yield FieldError("spec.scaling.cpuAlwaysAllocated", "cpu-below-1-billing",
                                 "CPU below 1 requires request-based billing (cpuAlwaysAllocated: false)")
        elif cpu not in whole:
            allowed = ", ".join(str(c) for c in sorted(whole))
            yield FieldError(cpu_path, "cpu-values", f"whole CPU values are {allowed}", cpu_text)
        elif memory is not None:
            low, high = whole[cpu]
            if not low <= memory <= high:
                yield FieldError(mem_path, "cpu-memory",
                                 f"with {cpu_text} vCPU memory must be {_size(low)} to {_size(high)}", mem_text)
    if memory is not None and memory < limits.MEMORY_MIN and (cpu is None or cpu < 1):
        yield FieldError(mem_path, "memory-minimum", "at least 128Mi", mem_text)
    if _is_dict(gpu) and gpu_kind is not None:
        gtype = gpu.get("type")
        note = "" if gpu_kind.verified else " (inferred from a quota error; verify)"
        if cpu is not None and cpu < gpu_kind.min_cpu:
            yield FieldError(cpu_path, "gpu-minimum-cpu", f"{gtype} needs at least {gpu_kind.min_cpu} vCPU{note}",
                             cpu_text)
        if memory is not None and memory < gpu_kind.min_memory:
            yield FieldError(mem_path, "gpu-minimum-memory",
                             f"{gtype} needs at least {_size(gpu_kind.min_memory)}{note}", mem_text)
        if isinstance(region, str) and region not in gpu_kind.regions:
            yield FieldError("spec.region", "gpu-region",
                             f"{gtype} is offered in {', '.join(sorted(gpu_kind.regions))}", region)
        if scaling.get("cpuAlwaysAllocated") is False:
            yield FieldError("spec.scaling.cpuAlwaysAllocated", "gpu-cpu-always-allocated",
                             "a GPU needs CPU always allocated (instance-based billing)", False)


def _size(n: int) -> str:
    return f"{n // limits.GiB}Gi" if n % limits.GiB == 0 else f"{n // limits.MiB}Mi"


def _image_gpu_errors(runtime: Mapping[str, Any]) -> Iterator[FieldError]:
    """TF Serving publishes GPU builds as `X.Y.Z-gpu`; the CPU build cannot use the GPU."""
    image = runtime.get("image")
    if not isinstance(image, str) or "tensorflow/serving" not in image or "@" in image:
        return
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if _is_dict(runtime.get("gpu")) and not tag.endswith("-gpu"):
        yield FieldError("spec.runtime.image", "gpu-image", "with a GPU use the -gpu TF Serving image", image)
    if not _is_dict(runtime.get("gpu")) and tag.endswith("-gpu"):
        yield FieldError("spec.runtime.image", "gpu-image", "a -gpu image needs spec.runtime.gpu", image)


def _runtime_errors(spec: Mapping[str, Any]) -> Iterator[FieldError]:
    runtime = spec.get("runtime")
    if not _is_dict(runtime):
        return
    scaling = spec.get("scaling")
    scaling = scaling if _is_dict(scaling) else {}
    image = runtime.get("image")
    if isinstance(image, str) and image:
        yield from image_errors(image)
    yield from _image_gpu_errors(runtime)
    yield from _resource_errors(runtime, scaling, spec.get("region"))
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
            if "value" in var and "secretKeyRef" in var:  # the CRD's CEL rule, here too
                yield FieldError(f"spec.runtime.env[{i}]", "env-value-or-secret",
                                 "set either value or secretKeyRef, not both", name)
            if isinstance(var.get("value"), str) and var["value"]:
                yield from credential_errors(f"spec.runtime.env[{i}].value", name, var["value"])
    args = runtime.get("args")
    if isinstance(args, list):
        for i, arg in enumerate(args):
            flag = arg.split("=", 1)[0] if isinstance(arg, str) else ""
            if isinstance(arg, str):
                for error in credential_errors(f"spec.runtime.args[{i}]", flag, arg):
                    if error.rule != "env-plain-credential":  # flag names alone say little
                        yield error
            if flag in OWNED_FLAGS:
                where = _OWNED_FLAG_FIELDS.get(flag)
                yield FieldError(f"spec.runtime.args[{i}]", "owned-flag",
                                 "tfms sets this flag from the spec (a later copy would override it)"
                                 + (f"; use {where}" if where else ""), arg)
    yield from _batching_errors(runtime, scaling)
    yield from _monitoring_errors(runtime)
    probe = runtime.get("startupProbe")
    if _is_dict(probe):
        for key in ("initialDelaySeconds", "periodSeconds"):
            value = probe.get(key)
            if isinstance(value, int) and value > limits.PROBE_STARTUP_MAX_SECONDS:
                yield FieldError(f"spec.runtime.startupProbe.{key}", "probe-startup-limit",
                                 f"a startup probe's {key} is at most {limits.PROBE_STARTUP_MAX_SECONDS}", value)
    for kind in ("startupProbe", "livenessProbe"):
        p = runtime.get(kind)
        if _is_dict(p):
            period, timeout = p.get("periodSeconds"), p.get("timeoutSeconds")
            if isinstance(period, int) and isinstance(timeout, int) and timeout > period:
                yield FieldError(f"spec.runtime.{kind}.timeoutSeconds", "probe-timeout",
                                 f"must not exceed periodSeconds ({period})", timeout)


def _batching_errors(runtime: Mapping[str, Any], scaling: Mapping[str, Any]) -> Iterator[FieldError]:
    """Batching that can fill its batches (B-025).

    Cloud Run hands an instance at most `concurrency` requests at once, and TF Serving builds a
    batch only from requests in flight on that instance. With fewer concurrent requests than
    maxBatchSize a batch of single-row requests never fills, so every batch waits the whole
    batchTimeoutMicros: latency added, nothing gained. A timeout of 0 never waits, so any
    concurrency is fine then.
    """
    batching = runtime.get("batching")
    if not _is_dict(batching):
        return
    size, timeout = batching.get("maxBatchSize"), batching.get("batchTimeoutMicros", 0)
    concurrency = scaling.get("concurrency")
    if (isinstance(size, int) and isinstance(timeout, int) and isinstance(concurrency, int)
            and timeout > 0 and concurrency < size):
        yield FieldError("spec.scaling.concurrency", "batching-concurrency",
                         f"batching waits up to {timeout}us to fill batches of {size}, but Cloud Run sends at most "
                         f"{concurrency} concurrent request(s) to an instance, so batches of single-row requests never "
                         f"fill and every request waits the full timeout; set concurrency to at least {size}, lower "
                         "maxBatchSize, or set batchTimeoutMicros to 0", concurrency)
    allowed = batching.get("allowedBatchSizes")
    if isinstance(allowed, list) and allowed and all(isinstance(a, int) for a in allowed):
        if any(b <= a for a, b in itertools.pairwise(allowed)):
            yield FieldError("spec.runtime.batching.allowedBatchSizes", "allowed-batch-sizes",
                             "allowed batch sizes must be strictly increasing", allowed)
        if isinstance(size, int) and allowed[-1] != size:
            yield FieldError("spec.runtime.batching.allowedBatchSizes", "allowed-batch-sizes",
                             f"the last allowed batch size must equal maxBatchSize ({size})", allowed)


def _monitoring_errors(runtime: Mapping[str, Any]) -> Iterator[FieldError]:
    monitoring = runtime.get("monitoring")
    if not _is_dict(monitoring) or monitoring.get("enabled") is False:
        return
    path = monitoring.get("path")
    if isinstance(path, str) and (path.lower() == "/v1" or path.lower().startswith("/v1/") or path == "/"):
        yield FieldError("spec.runtime.monitoring.path", "monitoring-path",
                         "TF Serving's model API owns / and /v1/...; serve the metrics elsewhere, e.g. "
                         "/monitoring/prometheus/metrics", path)


def _tf_serving_version(image: Any) -> tuple[int, int] | None:
    if not isinstance(image, str) or "@" in image:
        return None
    repository, _, tag = image.rpartition(":")
    if not repository.endswith("tensorflow/serving"):
        return None
    m = _TF_SERVING_TAG.match(tag)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _model_errors(spec: Mapping[str, Any]) -> Iterator[FieldError]:
    model = spec.get("model")
    if not _is_dict(model):
        return
    base = model.get("basePath")
    if isinstance(base, str) and base and not (base.startswith("gs://") or base.startswith("/")):
        yield FieldError("spec.model.basePath", "model-base-path",
                         "must be gs://bucket/path or an absolute path", base)
    elif isinstance(base, str) and base.startswith("gs://") and not _BUCKET_RE.match(base[5:].split("/", 1)[0]):
        yield FieldError("spec.model.basePath", "model-base-path",
                         "a gs:// path needs a bucket name: gs://bucket/path", base)
    labels = model.get("versionLabels")
    if not _is_dict(labels) or not labels:
        return
    pinned = model.get("version")
    for label, version in sorted(labels.items()):
        if isinstance(pinned, int) and isinstance(version, int) and version > pinned:
            yield FieldError(f"spec.model.versionLabels.{label}", "label-above-pinned-version",
                             f"version {version} is above the pinned version {pinned}; TF Serving answers requests "
                             "without a version or label from the highest loaded version, so the pin would no "
                             "longer decide what clients get: drop spec.model.version or pin the highest version",
                             version)
    runtime = spec.get("runtime")
    served = _tf_serving_version(runtime.get("image")) if _is_dict(runtime) else None
    if served is not None and served < REST_LABELS_MIN_VERSION:
        yield FieldError("spec.model.versionLabels", "labels-need-newer-image",
                         f"TF Serving {served[0]}.{served[1]} serves version labels over gRPC only; REST "
                         "/labels/ paths need {}.{} or later (B-026)".format(*REST_LABELS_MIN_VERSION),
                         runtime.get("image") if _is_dict(runtime) else None)


def _metadata_key_errors(spec: Mapping[str, Any]) -> Iterator[FieldError]:
    """Cloud Run v2 rejects label and annotation keys in Google's and Knative's namespaces."""
    for field in ("labels", "annotations"):
        keys = spec.get(field)
        if not _is_dict(keys):
            continue
        for key in keys:
            if any(key.startswith(p) for p in names.RESERVED_KEY_PREFIXES):
                yield FieldError(f"spec.{field}.{key}", "reserved-key-prefix",
                                 "Cloud Run v2 rejects keys under " + ", ".join(names.RESERVED_KEY_PREFIXES), key)
            elif field == "labels" and key in (names.LABEL_MANAGED_BY, names.LABEL_NAMESPACE, names.LABEL_NAME):
                yield FieldError(f"spec.labels.{key}", "owned-label", "tfms sets this label itself", key)
            elif field == "annotations" and key.startswith(names.ANNOTATION_PREFIX):
                yield FieldError(f"spec.annotations.{key}", "owned-annotation",
                                 f"tfms keeps its own state under {names.ANNOTATION_PREFIX} on the Cloud Run "
                                 "service (rollout, invokers)", key)


def _rollout_errors(spec: Mapping[str, Any]) -> Iterator[FieldError]:
    rollout = spec.get("rollout")
    if not _is_dict(rollout):
        return
    steps = rollout.get("steps")
    if isinstance(steps, list) and steps and all(isinstance(s, int) for s in steps):
        if any(b <= a for a, b in itertools.pairwise(steps)):
            yield FieldError("spec.rollout.steps", "steps-increasing", "canary steps must be strictly increasing",
                             steps)
        if steps[-1] != 100:
            yield FieldError("spec.rollout.steps", "steps-end-at-100", "the last canary step must be 100", steps)
    interval = rollout.get("interval")
    if isinstance(interval, str) and re.fullmatch(DURATION_PATTERN, interval):
        seconds = parse_duration(interval)
        if not MIN_STEP_INTERVAL_S <= seconds <= MAX_STEP_INTERVAL_S:
            yield FieldError("spec.rollout.interval", "interval-range",
                             "a canary step lasts at least 1ms and at most 7 days (168h); to hold a step "
                             "until someone approves it, use manualGates", interval)
    traffic = spec.get("traffic")
    if rollout.get("strategy") == "canary" and isinstance(traffic, list) and traffic:
        yield FieldError("spec.traffic", "canary-owns-traffic",
                         "a canary rollout manages traffic itself; leave spec.traffic empty")


def _rollout_intent_errors(spec: Mapping[str, Any]) -> Iterator[FieldError]:
    """On the spec as written (before defaults): canary settings without the canary strategy
    would be silently ignored, and an empty step list would silently mean 'all at once'."""
    rollout = spec.get("rollout")
    if not _is_dict(rollout):
        return
    canary = rollout.get("strategy") == "canary"
    if rollout.get("steps") == [] and canary:
        yield FieldError("spec.rollout.steps", "steps-empty", "a canary needs at least one step ending at 100 "
                         "(leave steps out for the default [10, 50, 100])", [])
    if canary:
        return
    set_fields = [f for f in ("steps", "interval", "manualGates", "analysis")
                  if rollout.get(f) not in (None, [], False)]
    for f in set_fields:
        yield FieldError(f"spec.rollout.{f}", "canary-only",
                         f"{f} applies only to strategy: canary (strategy is "
                         f"{rollout.get('strategy') or 'immediate, the default'}, which moves 100% at once)",
                         rollout.get(f))


def _semantic_errors(service_id: str, spec: Mapping[str, Any]) -> Iterator[FieldError]:
    if spec.get("project") == "":
        yield FieldError("spec.project", "required", "set spec.project or TFMS_PROJECT")
    yield from _model_errors(spec)
    yield from _runtime_errors(spec)
    yield from _metadata_key_errors(spec)
    yield from _rollout_errors(spec)
    scaling = spec.get("scaling")
    if _is_dict(scaling):
        lo, hi = scaling.get("minInstances"), scaling.get("maxInstances")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            yield FieldError("spec.scaling.minInstances", "min-le-max",
                             f"must not exceed maxInstances ({hi})", lo)
    traffic = spec.get("traffic")
    if isinstance(traffic, list):
        yield from _traffic_errors(service_id, traffic)


MAX_NESTING: Final = 32  # the schema is 6 levels deep; deeper input is garbage, refused without recursion


def _nesting_error(value: Any, path: str) -> FieldError | None:
    """The first place `value` nests deeper than MAX_NESTING, found iteratively."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > MAX_NESTING:
            return FieldError(where, "nesting-depth", f"nested deeper than {MAX_NESTING} levels")
        if isinstance(node, dict):
            stack.extend((v, _path(where, [k]), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, _path(where, [i]), depth + 1) for i, v in enumerate(node))
    return None


def generation_of(metadata: Any) -> int:
    """metadata.generation as the API server sets it (a non-negative integer); 0 for anything else,
    e.g. a hand-written file (the field is the server's, so it is not a spec error)."""
    value = metadata.get("generation") if _is_dict(metadata) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


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
    errors.extend(_unknown_outside_spec(obj, metadata))
    errors.extend(_name_errors(service_id))
    errors.extend(_namespace_errors(metadata.get("namespace")))
    spec = obj.get("spec")
    if not _is_dict(spec):
        errors.append(FieldError("spec", "required", "spec must be an object", None))
        return sorted(set(errors))
    too_deep = _nesting_error(spec, "spec")
    if too_deep is not None:  # before the schema walk, which recurses once per level
        errors.append(too_deep)
        return sorted(set(errors))
    errors.extend(_schema_errors(spec))
    errors.extend(_unrepresentable(spec, "spec"))
    errors.extend(_rollout_intent_errors(spec))
    defaults = defaults or Defaults()
    defaulted = with_defaults(spec, defaults)
    semantic = list(_semantic_errors(service_id if isinstance(service_id, str) else "", defaulted))
    runtime = spec.get("runtime")
    if not (_is_dict(runtime) and "image" in runtime):  # the image came from the operator's setting: say so
        semantic = [dc_replace(e, path=f"{e.path} (from TFMS_DEFAULT_IMAGE={defaults.image})")
                    if e.path == "spec.runtime.image" else e for e in semantic]
    errors.extend(semantic)
    return sorted({_redacted(e) for e in errors})


_ENV_VALUE: Final = re.compile(r"^spec\.runtime\.env\[\d+\]\.value$")


def _redacted(error: FieldError) -> FieldError:
    """An env value may be a credential (a numeric password, a key too long to be allowed): an error
    about it names the field, never the value, because errors end up in events, status and logs.
    (The credential rules already show the variable's name instead of its value.)"""
    credential_rule = error.rule.startswith("env-") and error.rule != "env-value-size"
    if not _ENV_VALUE.match(error.path) or (credential_rule and isinstance(error.value, str)):
        return error
    message = error.message
    if error.rule.startswith("schema-"):  # jsonschema's text quotes the instance, lists and maps included
        message = "must be a string" if error.rule == "schema-type" else f"breaks the {error.rule[7:]} rule"
    elif error.value is not None:
        for shown in {repr(error.value), str(error.value)}:
            message = message.replace(shown, "the value")
    return FieldError(error.path, error.rule, message, None)


def _probe(raw: Mapping[str, Any] | None) -> Probe | None:
    if raw is None:
        return None
    return Probe(raw["initialDelaySeconds"], raw["periodSeconds"], raw["timeoutSeconds"], raw["failureThreshold"])


def _env(raw: Mapping[str, Any]) -> EnvVar:
    ref = raw.get("secretKeyRef")
    secret = SecretRef(ref["secret"], ref.get("version", "latest")) if ref else None
    return EnvVar(raw["name"], raw.get("value", ""), secret)


def parse(obj: Mapping[str, Any], defaults: Defaults | None = None, source: str = "") -> TFModelService:
    """The typed service, or `SpecInvalid` listing every broken rule."""
    defaults = defaults or Defaults()
    errors = validate(obj, defaults)
    if errors:
        raise SpecInvalid(errors, source)
    metadata = obj["metadata"]
    spec = with_defaults(obj["spec"], defaults)
    model, runtime, scaling, access, rollout = (
        spec["model"], spec["runtime"], spec["scaling"], spec["access"], spec["rollout"])
    gpu, batching, analysis = runtime.get("gpu"), runtime.get("batching"), rollout.get("analysis")
    return TFModelService(
        name=metadata["name"],
        namespace=metadata.get("namespace", "") or "default",
        project=spec["project"],
        region=spec["region"],
        model=ModelSpec(
            name=model["name"], base_path=model["basePath"], version=model.get("version"),
            signature_name=model.get("signatureName", ""),
            version_labels=tuple(sorted((model.get("versionLabels") or {}).items())),
        ),
        runtime=RuntimeSpec(
            image=runtime["image"], cpu=runtime["resources"]["cpu"], memory=runtime["resources"]["memory"],
            env=tuple(_env(v) for v in runtime["env"]),
            args=tuple(runtime["args"]),
            gpu=Gpu(gpu["type"], gpu["zonalRedundancy"]) if gpu else None,
            batching=Batching(batching["maxBatchSize"], batching.get("batchTimeoutMicros"),
                              batching.get("maxEnqueuedBatches"), batching.get("numBatchThreads"),
                              tuple(batching.get("allowedBatchSizes", ())))
            if batching else None,
            startup_probe=_probe(runtime["startupProbe"]),
            liveness_probe=_probe(runtime.get("livenessProbe")),
            monitoring=Monitoring(runtime["monitoring"]["path"])
            if runtime.get("monitoring") and runtime["monitoring"]["enabled"] else None,
            warmup=runtime["warmup"],
        ),
        scaling=ScalingSpec(
            min_instances=scaling["minInstances"], max_instances=scaling["maxInstances"],
            concurrency=scaling["concurrency"], timeout_seconds=scaling["timeoutSeconds"],
            cpu_always_allocated=scaling["cpuAlwaysAllocated"], startup_cpu_boost=scaling["startupCpuBoost"],
        ),
        service_account=spec.get("serviceAccount", ""),
        access=AccessSpec(tuple(access["invokers"]), access["public"], access["ingress"], access["invokersMode"]),
        labels=tuple(sorted(spec["labels"].items())),
        annotations=tuple(sorted(spec["annotations"].items())),
        traffic=tuple(
            TrafficTarget(percent=t.get("percent", 0), revision=t.get("revision", ""), tag=t.get("tag", ""))
            for t in spec["traffic"]
        ),
        rollout=RolloutSpec(
            strategy=rollout["strategy"], steps=tuple(rollout["steps"]), interval=rollout["interval"],
            manual_gates=rollout["manualGates"],
            analysis=Analysis(analysis.get("maxErrorRate"), analysis.get("maxP99LatencyMs"),
                              analysis.get("minRequestCount", 0), analysis.get("failureLimit", 0))
            if analysis else None,
        ),
        paused=spec["paused"],
        deletion_policy=spec["deletionPolicy"],
        generation=generation_of(metadata),
        uid=str(metadata.get("uid", "") or ""),
    )


def duplicate_errors(services: Sequence[tuple[str, TFModelService]]) -> list[tuple[str, FieldError]]:
    """(source, error) for every service after the first defining the same Cloud Run service
    (project/region/name): applying both would make one silently overwrite the other."""
    first: dict[tuple[str, str, str], str] = {}
    out: list[tuple[str, FieldError]] = []
    for source, svc in services:
        key = (svc.project, svc.region, svc.name)
        if key in first:
            out.append((source, FieldError(
                "metadata.name", "service-unique",
                f"Cloud Run service {'/'.join(key)} is also defined by {first[key] or 'another manifest'}",
                svc.name)))
        else:
            first[key] = source
    return out
