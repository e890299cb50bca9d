"""Defaults that make every owned field explicit.

An explicit desired value for every field tfms owns means a field removed from the spec is
reset rather than silently left at its old live value, and server-side defaults never look
like drift.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tfms.api import names
from tfms.api.errors import SettingInvalid
from tfms.api.quantities import parse_cpu
from tfms.api.schema import MESSAGE, MONITORING_PATH_DEFAULT, RULE, SPEC_SCHEMA


@dataclass(frozen=True)
class Defaults:
    """Operator-wide defaults (from TFMS_* settings), applied where the spec is silent."""

    project: str = ""
    region: str = "us-central1"
    image: str = names.DEFAULT_IMAGE

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Defaults:
        """The defaults from TFMS_* variables; `SettingInvalid` names a variable that breaks the rule
        of the spec field it stands in for (spec.project, spec.region)."""
        project = env.get("TFMS_PROJECT", "")
        region = env.get("TFMS_REGION", "") or "us-central1"
        for variable, field, value in (("TFMS_PROJECT", "project", project), ("TFMS_REGION", "region", region)):
            if value:
                _check_setting(variable, field, value)
        return cls(project=project, region=region,
                   image=env.get("TFMS_DEFAULT_IMAGE", "") or names.DEFAULT_IMAGE)

    @property
    def gpu_image(self) -> str:
        """The -gpu variant of the default image (TF Serving tags GPU builds `X.Y.Z-gpu`)."""
        return self.image if self.image.endswith("-gpu") or "@" in self.image else f"{self.image}-gpu"


def _check_setting(variable: str, field: str, value: str) -> None:
    """The spec schema's own pattern and message for `spec.<field>`, applied to its TFMS_* default."""
    schema = SPEC_SCHEMA["properties"][field]
    if not re.search(schema["pattern"], value):
        raise SettingInvalid(f"{variable}: {schema[MESSAGE]} [{schema[RULE]}] (got {value!r}; "
                             f"it is the default for spec.{field})")


def _sub(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """The dict at `parent[key]`, created if absent; a wrong-typed value is left for validation."""
    value = parent.setdefault(key, {})
    return value if isinstance(value, dict) else {}


def with_defaults(spec: Mapping[str, Any], defaults: Defaults) -> dict[str, Any]:
    """A defaulted deep copy of `spec`; the input is never changed (it may be a live object).

    Never fails on malformed input: values of the wrong type stay as they are, for
    validation to report with their field paths.
    """
    out = copy.deepcopy(dict(spec))
    out.setdefault("project", defaults.project)
    out.setdefault("region", defaults.region)
    runtime = _sub(out, "runtime")
    gpu = runtime.get("gpu")
    has_gpu = isinstance(gpu, dict)
    if isinstance(gpu, dict):
        gpu.setdefault("zonalRedundancy", True)
    runtime.setdefault("image", defaults.gpu_image if has_gpu else defaults.image)
    resources = _sub(runtime, "resources")
    resources.setdefault("cpu", "4" if has_gpu else "1")
    resources.setdefault("memory", "16Gi" if has_gpu else "2Gi")
    runtime.setdefault("env", [])
    runtime.setdefault("args", [])
    runtime.setdefault("warmup", True)
    monitoring = runtime.get("monitoring")
    if isinstance(monitoring, dict):
        monitoring.setdefault("enabled", True)
        monitoring.setdefault("path", MONITORING_PATH_DEFAULT)
    # TF Serving opens its port only once models are loaded; give loads Cloud Run's full
    # 240 s startup window, probed on the model status URL.
    probe = _sub(runtime, "startupProbe")
    probe.setdefault("initialDelaySeconds", 0)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("timeoutSeconds", 5)
    probe.setdefault("failureThreshold", 24)
    liveness = runtime.get("livenessProbe")
    if isinstance(liveness, dict):
        liveness.setdefault("initialDelaySeconds", 0)
        liveness.setdefault("periodSeconds", 30)
        liveness.setdefault("timeoutSeconds", 5)
        liveness.setdefault("failureThreshold", 3)
    scaling = _sub(out, "scaling")
    scaling.setdefault("minInstances", 0)
    scaling.setdefault("maxInstances", 100)
    cpu = parse_cpu(resources["cpu"]) if isinstance(resources.get("cpu"), str) else None
    scaling.setdefault("concurrency", 1 if cpu is not None and cpu < 1 else 80)  # Cloud Run's own defaults
    scaling.setdefault("timeoutSeconds", 300)
    scaling.setdefault("cpuAlwaysAllocated", has_gpu)
    scaling.setdefault("startupCpuBoost", True)
    access = _sub(out, "access")
    access.setdefault("invokers", [])
    access.setdefault("public", False)
    access.setdefault("invokersMode", names.INVOKERS_ADDITIVE)
    access.setdefault("ingress", "all")
    out.setdefault("labels", {})
    out.setdefault("annotations", {})
    traffic = out.setdefault("traffic", [])
    if isinstance(traffic, list) and len(traffic) == 1 and isinstance(traffic[0], dict):
        traffic[0].setdefault("percent", 100)  # B-001: never an implicit percent
    rollout = _sub(out, "rollout")
    rollout.setdefault("strategy", "immediate")
    rollout.setdefault("steps", [10, 50, 100] if rollout.get("strategy") == "canary" else [])
    rollout.setdefault("interval", "5m")
    rollout.setdefault("manualGates", False)
    out.setdefault("paused", False)
    out.setdefault("deletionPolicy", "Delete")
    return out
