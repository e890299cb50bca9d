"""Defaults that make every owned field explicit.

An explicit desired value for every field tfms owns means a field removed from the spec is
reset rather than silently left at its old live value, and server-side defaults never look
like drift.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tfms.api import names


@dataclass(frozen=True)
class Defaults:
    """Operator-wide defaults (from TFMS_* settings), applied where the spec is silent."""

    project: str = ""
    region: str = "us-central1"
    image: str = names.DEFAULT_IMAGE

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Defaults:
        return cls(
            project=env.get("TFMS_PROJECT", ""),
            region=env.get("TFMS_REGION", "") or "us-central1",
            image=env.get("TFMS_DEFAULT_IMAGE", "") or names.DEFAULT_IMAGE,
        )


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
    runtime.setdefault("image", defaults.image)
    resources = _sub(runtime, "resources")
    resources.setdefault("cpu", "1")
    resources.setdefault("memory", "2Gi")
    runtime.setdefault("env", [])
    runtime.setdefault("args", [])
    scaling = _sub(out, "scaling")
    scaling.setdefault("minInstances", 0)
    scaling.setdefault("maxInstances", 100)
    scaling.setdefault("concurrency", 80)
    scaling.setdefault("timeoutSeconds", 300)
    _sub(out, "access").setdefault("ingress", "all")
    out.setdefault("traffic", [])
    out.setdefault("deletionPolicy", "Delete")
    return out
