"""Model pre-flight for `tfms validate`, `tfms inspect-model` and the reconciler.

Reads what TF Serving will find at `spec.model.basePath` (through `tfms.backends.storage`)
and checks it against the spec with `tfms.modelcheck`, before any Cloud Run call: numeric
version directories, saved_model.pb, the pinned and labelled versions, the signature, the
warmup file, and whether loading fits the startup probe's window (B-023). The result
becomes `status.model` (the resolved version and its saved_model.pb object generation) and
a `ModelChecked` condition.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tfms.api.conditions import FALSE, MODEL_CHECKED, TRUE, UNKNOWN, Condition
from tfms.api.model import TFModelService
from tfms.backends.errors import BackendError, Transient
from tfms.backends.storage import reader_for
from tfms.modelcheck.check import Expectation, Issue, ModelReport, inspect_model
from tfms.modelcheck.reader import ModelReader

ReaderFactory = Callable[[str], ModelReader]
MiB = 2**20
# Load-time model (B-023): TF Serving streams the version from storage, then builds the graph.
# The optimistic rate decides errors (even then it cannot fit), the pessimistic one warnings.
LOAD_OVERHEAD_SECONDS = 5.0
GCS_BYTES_PER_SECOND = (40 * MiB, 200 * MiB)  # (pessimistic, optimistic)
LOCAL_BYTES_PER_SECOND = (200 * MiB, 1000 * MiB)


def expectation(svc: TFModelService) -> Expectation:
    return Expectation(version=svc.model.version, labels=dict(svc.model.version_labels),
                       signature_name=svc.model.signature_name, warmup=svc.runtime.warmup)


def startup_window_seconds(svc: TFModelService) -> int:
    """How long Cloud Run waits for the first successful startup probe."""
    probe = svc.runtime.startup_probe
    if probe is None:
        return 240  # Cloud Run's automatic TCP probe: 240 s period, 1 failure
    return probe.initial_delay_seconds + probe.period_seconds * probe.failure_threshold


def load_seconds(size_bytes: int, remote: bool, optimistic: bool) -> float:
    rates = GCS_BYTES_PER_SECOND if remote else LOCAL_BYTES_PER_SECOND
    return LOAD_OVERHEAD_SECONDS + size_bytes / rates[1 if optimistic else 0]


@dataclass
class Preflight:
    """What pre-flight found; `report` is None when the model could not be (or was not) read."""

    base_path: str
    report: ModelReport | None = None
    skipped: str = ""  # why the model was not checked (e.g. a path baked into the image)
    error: str = ""  # storage failure
    transient: bool = False  # the storage failure is worth retrying soon
    extra: list[Issue] = field(default_factory=list)  # findings beyond the model itself (startup window)

    @property
    def issues(self) -> list[Issue]:
        return [*(self.report.issues if self.report else []), *self.extra]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        """Nothing stops the deploy (a skipped check does not)."""
        return not self.errors and not self.error

    def status(self, generation: int = 0) -> dict[str, Any]:
        """`status.model` for the object's generation."""
        out: dict[str, Any] = {"basePath": self.base_path, "observedGeneration": generation}
        report = self.report
        if report is None or report.served_version is None:
            return out
        out["resolvedVersion"] = report.served_version
        out["versions"] = list(report.policy_versions or (report.served_version,))
        served = report.served()
        if served is not None and served.saved_model_generation:
            out["savedModelGeneration"] = served.saved_model_generation
        out["signatureName"] = report.signature_key
        return out

    def condition(self) -> Condition:
        if self.error:
            reason = "StorageUnavailable" if self.transient else "StorageError"
            return Condition(MODEL_CHECKED, UNKNOWN if self.transient else FALSE, reason, self.error)
        if self.skipped:
            return Condition(MODEL_CHECKED, UNKNOWN, "NotChecked", self.skipped)
        if self.errors:
            return Condition(MODEL_CHECKED, FALSE, "ModelInvalid", "; ".join(i.message for i in self.errors))
        report = self.report
        version = report.served_version if report else None
        message = f"serving version {version} of {self.base_path}" if version is not None else self.base_path
        if self.warnings:
            message += "; " + "; ".join(i.message for i in self.warnings)
        return Condition(MODEL_CHECKED, TRUE, "ModelValid", message)

    def lines(self) -> list[str]:
        """Human-readable findings, errors first."""
        if self.error:
            return [f"error: {self.error}"]
        if self.skipped:
            return [f"not checked: {self.skipped}"]
        order = {"error": 0, "warning": 1, "info": 2}
        return [str(i) for i in sorted(self.issues, key=lambda i: order[i.severity])]


def _window_issues(svc: TFModelService, report: ModelReport) -> list[Issue]:
    served = report.served()
    if served is None:
        return []
    size = sum(v.size_bytes for v in report.versions.values())  # every policy version loads before serving
    remote = report.base_path.startswith("gs://")
    window = startup_window_seconds(svc)
    fast, slow = load_seconds(size, remote, optimistic=True), load_seconds(size, remote, optimistic=False)
    where = "Cloud Storage" if remote else "disk"
    advice = ("raise spec.runtime.startupProbe (periodSeconds x failureThreshold), keep spec.scaling.minInstances "
              "at 1 or more so a cold start is rare, or bake the model into the image")
    if fast > window:
        return [Issue("startup-window", f"loading {size / MiB:.0f} MiB from {where} takes at least {fast:.0f}s, "
                      f"longer than the startup probe's window of {window}s: every instance would be killed before "
                      f"the model is ready; {advice}")]
    if slow > window:
        return [Issue("startup-window", f"loading {size / MiB:.0f} MiB from {where} may take up to {slow:.0f}s, "
                      f"close to the startup probe's window of {window}s; {advice}", "warning")]
    return []


def preflight(svc: TFModelService, reader_factory: ReaderFactory = reader_for,
              exists: Callable[[str], bool] = os.path.isdir) -> Preflight:
    """Check the model of one service; never raises for storage problems (they are in the result)."""
    base = svc.model.base_path
    result = Preflight(base)
    if not base.startswith("gs://") and not exists(base):
        result.skipped = (f"{base} is not a gs:// path and not a directory here, so it is expected inside the image; "
                          "TF Serving will check it when the revision starts")
        return result
    try:
        report = inspect_model(reader_factory(base), base, expectation(svc))
    except BackendError as exc:
        result.error, result.transient = str(exc), isinstance(exc, Transient)
        return result
    result.report = report
    result.extra = _window_issues(svc, report)
    return result


async def preflight_async(svc: TFModelService, reader_factory: ReaderFactory = reader_for) -> Preflight:
    """`preflight` off the event loop (the storage client is synchronous)."""
    return await asyncio.to_thread(preflight, svc, reader_factory)


def needs_check(generation: int, previous_status: Mapping[str, Any] | None) -> bool:
    """Check once per spec generation, not on every resync (a listing costs Cloud Storage operations)."""
    model = (previous_status or {}).get("model")
    return not (isinstance(model, Mapping) and model.get("observedGeneration") == generation and generation > 0)


__all__ = ["Preflight", "expectation", "needs_check", "preflight", "preflight_async", "startup_window_seconds"]
