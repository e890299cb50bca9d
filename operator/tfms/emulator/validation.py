"""Cloud Run's documented request rules (see reference/cloud-run-v2.md), as pure functions.

Every function returns all violations it finds rather than stopping at the first, so a
client sees every problem of a request at once, each named by its field path.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping

from google.cloud import run_v2

from .errors import Violation
from .naming import dns1035_problem

RESERVED_KEY_PREFIXES = (
    "run.googleapis.com/",
    "cloud.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
)
DESCRIPTION_MAX = 512
CONCURRENCY_MAX = 1000
TIMEOUT_MAX_S = 3600
ENV_VALUE_MAX = 32 * 1024
ALLOWED_LIMITS = ("cpu", "memory", "nvidia.com/gpu")
PORT_NAMES = ("", "http1", "h2c")
GPU_MIN_CPU = 4.0
GPU_MIN_MEMORY = 16 * 1024**3
MIB, GIB = 1024**2, 1024**3
CPU_MIN = 0.08
DEFAULT_MEMORY = 512 * MIB
# Whole vCPU counts Cloud Run offers, with the memory each allows: (min, max) bytes.
CPU_MEMORY = {
    1.0: (0, 4 * GIB),
    2.0: (0, 8 * GIB),
    4.0: (2 * GIB, 16 * GIB),
    6.0: (4 * GIB, 24 * GIB),
    8.0: (4 * GIB, 32 * GIB),
}
STARTUP_PROBE_MAX_S = 240
LIVENESS_PROBE_MAX_S = 3600
PROBE_TIMEOUT_MAX_S = 3600
DEFAULT_PROBE_PERIOD_S = 10
GEN2 = run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION

_MEMORY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT]i?|k)?$")
_MEMORY_UNITS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def parse_cpu(value: str) -> float | None:
    """vCPUs of a Kubernetes CPU quantity (`1`, `0.5`, `1000m`), or None if unparsable."""
    try:
        if value.endswith("m"):
            return float(value[:-1]) / 1000.0
        return float(value)
    except ValueError:
        return None


def parse_memory(value: str) -> int | None:
    """Bytes of a Kubernetes memory quantity (`512Mi`, `16Gi`, `4G`), or None if unparsable."""
    m = _MEMORY_RE.match(value)
    if not m:
        return None
    return int(float(m.group(1)) * _MEMORY_UNITS[m.group(2)])


def _reserved_keys(keys: Iterable[str], path: str) -> list[Violation]:
    return [
        Violation(
            f"{path}[{key!r}]",
            f"v2 API does not accept keys in the {key.split('/')[0]}/ namespace; use the matching field",
        )
        for key in keys
        if key.startswith(RESERVED_KEY_PREFIXES)
    ]


def validate_service(
    service: run_v2.Service, service_id: str, path: str = "service", revision_prefix: bool = True
) -> list[Violation]:
    """Rules on a Service as sent in Create/Update (output-only fields are ignored)."""
    out: list[Violation] = []
    if len(service.description) > DESCRIPTION_MAX:
        out.append(Violation(f"{path}.description", f"must be at most {DESCRIPTION_MAX} characters"))
    out += _reserved_keys(service.labels.keys(), f"{path}.labels")
    out += _reserved_keys(service.annotations.keys(), f"{path}.annotations")
    scaling = service.scaling
    if scaling.min_instance_count < 0:
        out.append(Violation(f"{path}.scaling.min_instance_count", "must not be negative"))
    if scaling.max_instance_count and scaling.min_instance_count > scaling.max_instance_count:
        out.append(Violation(f"{path}.scaling.min_instance_count", "must not exceed max_instance_count"))
    if not run_v2.Service.pb(service).HasField("template"):
        out.append(Violation(f"{path}.template", "is required"))
    else:
        out += validate_template(service.template, service_id, f"{path}.template", revision_prefix)
    return out


def validate_revision_name(revision: str, service_id: str, path: str, prefix: bool = True) -> list[Violation]:
    """A client-chosen revision name: a DNS-1035 label prefixed `{service}-`."""
    problem = dns1035_problem(revision)
    if problem:
        return [Violation(path, f"revision name {revision!r} {problem}")]
    if prefix and (not revision.startswith(f"{service_id}-") or revision == f"{service_id}-"):
        return [Violation(path, f"revision name {revision!r} must be prefixed by the service name '{service_id}-'")]
    return []


def validate_template(
    template: run_v2.RevisionTemplate, service_id: str, path: str, revision_prefix: bool = True
) -> list[Violation]:
    out: list[Violation] = []
    if template.revision:
        out += validate_revision_name(template.revision, service_id, f"{path}.revision", revision_prefix)
    out += _reserved_keys(template.labels.keys(), f"{path}.labels")
    out += _reserved_keys(template.annotations.keys(), f"{path}.annotations")
    concurrency = template.max_instance_request_concurrency
    if concurrency < 0 or concurrency > CONCURRENCY_MAX:
        out.append(Violation(f"{path}.max_instance_request_concurrency", f"must be between 0 and {CONCURRENCY_MAX}"))
    pb = run_v2.RevisionTemplate.pb(template)
    if pb.HasField("timeout"):
        seconds = pb.timeout.seconds + pb.timeout.nanos / 1e9
        if seconds <= 0 or seconds > TIMEOUT_MAX_S:
            out.append(Violation(f"{path}.timeout", f"must be more than 0 and at most {TIMEOUT_MAX_S}s"))
    scaling = template.scaling
    if scaling.min_instance_count < 0:
        out.append(Violation(f"{path}.scaling.min_instance_count", "must not be negative"))
    if scaling.max_instance_count < 0:
        out.append(Violation(f"{path}.scaling.max_instance_count", "must not be negative"))
    if scaling.max_instance_count and scaling.min_instance_count > scaling.max_instance_count:
        out.append(Violation(f"{path}.scaling.min_instance_count", "must not exceed max_instance_count"))
    out += _validate_containers(template, f"{path}.containers")
    return out


def _validate_containers(template: run_v2.RevisionTemplate, path: str) -> list[Violation]:
    out: list[Violation] = []
    containers = list(template.containers)
    if not containers:
        return [Violation(path, "at least one container is required")]
    with_ports = [i for i, c in enumerate(containers) if c.ports]
    if len(containers) > 1 and len(with_ports) != 1:
        out.append(Violation(path, "exactly one container (the ingress container) must declare a port"))
    names = [c.name for c in containers if c.name]
    if len(names) != len(set(names)):
        out.append(Violation(path, "container names must be unique"))
    gpu_holders = 0
    for i, c in enumerate(containers):
        cpath = f"{path}[{i}]"
        if not c.image:
            out.append(Violation(f"{cpath}.image", "is required"))
        if len(c.ports) > 1:
            out.append(Violation(f"{cpath}.ports", "only one container port may be specified"))
        for j, port in enumerate(c.ports):
            if port.name not in PORT_NAMES:
                out.append(Violation(f"{cpath}.ports[{j}].name", "must be 'http1' or 'h2c'"))
            if port.container_port < 0 or port.container_port > 65535:
                out.append(Violation(f"{cpath}.ports[{j}].container_port", "must be between 1 and 65535"))
        for j, env in enumerate(c.env):
            if not env.name:
                out.append(Violation(f"{cpath}.env[{j}].name", "is required"))
            if len(env.value.encode()) > ENV_VALUE_MAX:
                out.append(Violation(f"{cpath}.env[{j}].value", "must be at most 32 KiB"))
        limits: Mapping[str, str] = c.resources.limits
        for key in limits:
            if key not in ALLOWED_LIMITS:
                out.append(
                    Violation(f"{cpath}.resources.limits[{key!r}]", "only cpu, memory and nvidia.com/gpu are allowed")
                )
        cpu = parse_cpu(limits["cpu"]) if "cpu" in limits else 1.0
        memory = parse_memory(limits["memory"]) if "memory" in limits else DEFAULT_MEMORY
        if cpu is None or cpu <= 0:
            out.append(Violation(f"{cpath}.resources.limits['cpu']", f"invalid CPU quantity {limits['cpu']!r}"))
        if memory is None or memory <= 0:
            out.append(
                Violation(f"{cpath}.resources.limits['memory']", f"invalid memory quantity {limits['memory']!r}")
            )
        if cpu is not None and cpu > 0:
            out += _validate_cpu(template, c, cpath, cpu, memory)
        out += _validate_probes(c, cpath)
        if "nvidia.com/gpu" in limits:
            gpu_holders += 1
            out += _validate_gpu(template, c, cpath)
    if gpu_holders > 1:
        out.append(Violation(path, "only one container may request a GPU"))
    if template.node_selector.accelerator and gpu_holders == 0:
        out.append(
            Violation(f"{path}", "node_selector.accelerator is set, so one container must set limits['nvidia.com/gpu']")
        )
    return out


def _validate_cpu(
    template: run_v2.RevisionTemplate, c: run_v2.Container, cpath: str, cpu: float, memory: int | None
) -> list[Violation]:
    """The documented CPU/memory table: fractions 0.08-<1 (steps of 0.001) or 1, 2, 4, 6, 8
    vCPU, each with its memory range; below 1 vCPU also concurrency 1, request-based billing
    (`cpu_idle`) and not gen2."""
    out: list[Violation] = []
    base = cpath.rsplit(".", 1)[0]
    cpu_path, memory_path = f"{cpath}.resources.limits['cpu']", f"{cpath}.resources.limits['memory']"
    gpu = "nvidia.com/gpu" in c.resources.limits
    if cpu < 1:
        if cpu < CPU_MIN or abs(cpu * 1000 - round(cpu * 1000)) > 1e-6:
            out.append(Violation(cpu_path, "below 1 vCPU, CPU must be 0.08 to 0.999 in steps of 0.001"))
        cap = 512 * MIB if cpu < 0.5 else GIB
        if memory is not None and memory > cap:
            out.append(Violation(memory_path, f"at most {cap // MIB}Mi memory is allowed with {cpu:g} vCPU"))
        if template.max_instance_request_concurrency > 1:
            out.append(Violation(f"{base}.max_instance_request_concurrency", "must be 1 when CPU is below 1"))
        if not c.resources.cpu_idle:
            out.append(Violation(f"{cpath}.resources.cpu_idle", "must be true (request-based billing) below 1 vCPU"))
        if template.execution_environment == GEN2:
            out.append(Violation(f"{base}.execution_environment", "CPU below 1 requires the first generation"))
        return out
    if cpu not in CPU_MEMORY:
        if not (gpu and cpu > 8 and cpu.is_integer()):
            out.append(Violation(cpu_path, "must be below 1 (0.08-0.999) or exactly 1, 2, 4, 6 or 8 vCPU"))
        return out
    low, high = CPU_MEMORY[cpu]
    if memory is not None and not low <= memory <= high:
        floor = f"{low // GIB}Gi-" if low else "at most "
        out.append(Violation(memory_path, f"{cpu:g} vCPU allows {floor}{high // GIB}Gi memory"))
    return out


def _validate_probes(c: run_v2.Container, cpath: str) -> list[Violation]:
    """Startup delay/period <= 240 s, liveness <= 3600 s, timeout 1-3600 s and below the period."""
    out: list[Violation] = []
    pb = run_v2.Container.pb(c)
    for kind, limit in (("startup_probe", STARTUP_PROBE_MAX_S), ("liveness_probe", LIVENESS_PROBE_MAX_S)):
        if not pb.HasField(kind):
            continue
        probe, ppath = getattr(c, kind), f"{cpath}.{kind}"
        for name in ("initial_delay_seconds", "period_seconds"):
            value = getattr(probe, name)
            if value < 0 or value > limit:
                out.append(Violation(f"{ppath}.{name}", f"must be between 0 and {limit}"))
        if probe.timeout_seconds < 0 or probe.timeout_seconds > PROBE_TIMEOUT_MAX_S:
            out.append(Violation(f"{ppath}.timeout_seconds", f"must be between 1 and {PROBE_TIMEOUT_MAX_S}"))
        elif probe.timeout_seconds and probe.timeout_seconds >= (probe.period_seconds or DEFAULT_PROBE_PERIOD_S):
            out.append(Violation(f"{ppath}.timeout_seconds", "must be less than period_seconds"))
    return out


def _validate_gpu(template: run_v2.RevisionTemplate, c: run_v2.Container, cpath: str) -> list[Violation]:
    """Documented L4 minimums: one GPU, >= 4 vCPU, >= 16 GiB, CPU always allocated."""
    out: list[Violation] = []
    limits = c.resources.limits
    base = cpath.rsplit(".", 1)[0]
    if limits["nvidia.com/gpu"] != "1":
        out.append(Violation(f"{cpath}.resources.limits['nvidia.com/gpu']", "must be '1'"))
    if not template.node_selector.accelerator:
        out.append(Violation(f"{base}.node_selector.accelerator", "is required when a GPU is requested"))
    cpu = parse_cpu(limits.get("cpu", "1")) or 0.0
    if cpu < GPU_MIN_CPU:
        out.append(Violation(f"{cpath}.resources.limits['cpu']", "GPU instances need at least 4 vCPU"))
    memory = parse_memory(limits.get("memory", "512Mi")) or 0
    if memory < GPU_MIN_MEMORY:
        out.append(Violation(f"{cpath}.resources.limits['memory']", "GPU instances need at least 16Gi memory"))
    if c.resources.cpu_idle:
        out.append(Violation(f"{cpath}.resources.cpu_idle", "must be false: GPU instances need CPU always allocated"))
    return out


def validate_traffic(
    traffic: Iterable[run_v2.TrafficTarget],
    known_revisions: Container[str],
    new_revision: str | None,
    path: str = "service.traffic",
) -> list[Violation]:
    """Knative/Cloud Run traffic rules; `new_revision` is a name this very request creates."""
    out: list[Violation] = []
    targets = list(traffic)
    if not targets:
        return out
    total = 0
    tags: set[str] = set()
    for i, t in enumerate(targets):
        tpath = f"{path}[{i}]"
        if t.type_ == LATEST:
            if t.revision:
                out.append(Violation(f"{tpath}.revision", "must be empty when type is LATEST"))
        elif t.type_ == BY_REVISION:
            if not t.revision:
                out.append(Violation(f"{tpath}.revision", "is required when type is REVISION"))
            elif t.revision != new_revision and t.revision not in known_revisions:
                out.append(Violation(f"{tpath}.revision", f"revision {t.revision!r} does not exist"))
        else:
            out.append(Violation(f"{tpath}.type", "must be TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST or _REVISION"))
        if t.percent < 0 or t.percent > 100:
            out.append(Violation(f"{tpath}.percent", "must be between 0 and 100"))
        total += t.percent
        if t.tag:
            problem = dns1035_problem(t.tag)
            if problem:
                out.append(Violation(f"{tpath}.tag", f"tag {t.tag!r} {problem}"))
            elif t.tag in tags:
                out.append(Violation(f"{tpath}.tag", f"tag {t.tag!r} is used more than once"))
            tags.add(t.tag)
    if total != 100:
        out.append(Violation(path, f"traffic percentages must sum to 100 (got {total})"))
    return out
