"""The typed TFModelService, built only from a validated, defaulted object."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SecretRef:
    secret: str
    version: str = "latest"


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str = ""
    secret: SecretRef | None = None


@dataclass(frozen=True)
class TrafficTarget:
    percent: int
    revision: str = ""  # empty: the latest ready revision
    tag: str = ""

    @property
    def latest(self) -> bool:
        return not self.revision


@dataclass(frozen=True)
class ModelSpec:
    name: str
    base_path: str
    version: int | None = None
    signature_name: str = ""
    version_labels: tuple[tuple[str, int], ...] = ()  # sorted (label, version)

    @property
    def policy_versions(self) -> tuple[int, ...]:
        """The versions a `specific` policy loads: the pin and every labelled version; () means latest."""
        wanted = {v for _, v in self.version_labels}
        if self.version is not None:
            wanted.add(self.version)
        return tuple(sorted(wanted))


@dataclass(frozen=True)
class Gpu:
    type: str
    zonal_redundancy: bool = True


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    batch_timeout_micros: int | None = None
    max_enqueued_batches: int | None = None
    num_batch_threads: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Monitoring:
    """Prometheus metrics on the REST port."""

    path: str


@dataclass(frozen=True)
class Probe:
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 5
    failure_threshold: int = 3


@dataclass(frozen=True)
class RuntimeSpec:
    image: str
    cpu: str
    memory: str
    env: tuple[EnvVar, ...] = ()
    args: tuple[str, ...] = ()
    gpu: Gpu | None = None
    batching: Batching | None = None
    startup_probe: Probe | None = None
    liveness_probe: Probe | None = None
    monitoring: Monitoring | None = None
    warmup: bool = True


@dataclass(frozen=True)
class ScalingSpec:
    min_instances: int
    max_instances: int
    concurrency: int
    timeout_seconds: int
    cpu_always_allocated: bool = False
    startup_cpu_boost: bool = True


@dataclass(frozen=True)
class AccessSpec:
    invokers: tuple[str, ...] = ()
    public: bool = False
    ingress: str = "all"
    invokers_mode: str = "Additive"  # or "Authoritative" (owns the whole roles/run.invoker binding)

    @property
    def authoritative(self) -> bool:
        return self.invokers_mode == "Authoritative"


@dataclass(frozen=True)
class Analysis:
    max_error_rate: float | None = None
    max_p99_latency_ms: int | None = None
    min_request_count: int = 0
    failure_limit: int = 0


@dataclass(frozen=True)
class RolloutSpec:
    strategy: str = "immediate"
    steps: tuple[int, ...] = ()
    interval: str = "5m"
    manual_gates: bool = False
    analysis: Analysis | None = None


@dataclass(frozen=True)
class TFModelService:
    """One Cloud Run service serving one model; `name` is the Cloud Run service ID."""

    name: str
    namespace: str
    project: str
    region: str
    model: ModelSpec
    runtime: RuntimeSpec
    scaling: ScalingSpec
    service_account: str = ""
    access: AccessSpec = field(default_factory=AccessSpec)
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    traffic: tuple[TrafficTarget, ...] = ()
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    paused: bool = False
    deletion_policy: str = "Delete"
    generation: int = 0
    uid: str = ""

    @property
    def ingress(self) -> str:
        return self.access.ingress
