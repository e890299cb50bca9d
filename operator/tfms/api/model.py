"""The typed TFModelService, built only from a validated, defaulted object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str = ""


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


@dataclass(frozen=True)
class RuntimeSpec:
    image: str
    cpu: str
    memory: str
    env: tuple[EnvVar, ...] = ()
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScalingSpec:
    min_instances: int
    max_instances: int
    concurrency: int
    timeout_seconds: int


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
    ingress: str = "all"
    traffic: tuple[TrafficTarget, ...] = ()
    deletion_policy: str = "Delete"
    generation: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
