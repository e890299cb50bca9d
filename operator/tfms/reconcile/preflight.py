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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tfms.api.conditions import FALSE, MODEL_CHECKED, ORDER, TRUE, UNKNOWN, Condition, merge
from tfms.api.model import TFModelService
from tfms.backends.errors import BackendError, CredentialsMissing, NotFound, Transient
from tfms.backends.storage import GcsReader, LocalReader, reader_for
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
    error_kind: str = ""  # the failure's class: CredentialsMissing, NotFound, Permanent, Transient ...
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

    @property
    def would_not_serve(self) -> bool:
        """TF Serving would find no servable model: the model's own errors, or nothing at the path."""
        return bool(self.errors) or self.error_kind == NotFound.__name__

    def condition(self) -> Condition:
        if self.error_kind == CredentialsMissing.__name__:
            return Condition(MODEL_CHECKED, UNKNOWN, "CredentialsMissing",
                             f"{self.base_path} not checked (deploying anyway; Cloud Run reports a model its "
                             f"revision cannot load): {self.error}")
        if self.error_kind == NotFound.__name__:
            return Condition(MODEL_CHECKED, FALSE, "ModelInvalid", f"{self.error}: fix spec.model.basePath")
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
              exists: Callable[[str], bool] = os.path.isdir, *, local: bool = False) -> Preflight:
    """Check the model of one service; never raises for storage problems (they are in the result).

    `local`: revisions run on this machine (`tfms up`), where no image can hold the model, so a
    path that is not here is a mistake, not something to leave to the container."""
    base = svc.model.base_path
    result = Preflight(base)
    if not base.startswith("gs://") and not exists(base) and local:
        result.extra = [Issue("base-path-missing", f"spec.model.basePath: {base} is not a directory on this machine "
                              "(a relative basePath is relative to the manifest's own directory)")]
        return result
    if not base.startswith("gs://") and not exists(base):
        result.skipped = (f"{base} is not a gs:// path and not a directory here, so it is expected inside the image; "
                          "TF Serving will check it when the revision starts")
        return result
    try:
        report = inspect_model(reader_factory(base), base, expectation(svc))
    except BackendError as exc:
        result.error, result.transient, result.error_kind = str(exc), isinstance(exc, Transient), type(exc).__name__
        return result
    result.report = report
    result.extra = _window_issues(svc, report)
    return result


async def preflight_async(svc: TFModelService, reader_factory: ReaderFactory = reader_for, *,
                          local: bool = False) -> Preflight:
    """`preflight` off the event loop (the storage client is synchronous)."""
    return await asyncio.to_thread(partial(preflight, local=local), svc, reader_factory)


def needs_check(generation: int, previous_status: Mapping[str, Any] | None) -> bool:
    """Check once per spec generation, not on every resync (a listing costs Cloud Storage operations)."""
    model = (previous_status or {}).get("model")
    return not (isinstance(model, Mapping) and model.get("observedGeneration") == generation and generation > 0)


MODEL_CHECK_ENV = "TFMS_MODEL_CHECK"
MODES = ("enforce", "warn", "off")
CREDENTIALS_RETRY_SECONDS = 300.0  # looking for credentials can probe the metadata server: not on every pass


def model_check_mode(raw: str | None) -> str:
    """`TFMS_MODEL_CHECK`: enforce (default), warn or off; anything else is a configuration error."""
    mode = (raw or "enforce").strip().lower()
    if mode not in MODES:
        raise ValueError(f"{MODEL_CHECK_ENV} must be one of {', '.join(MODES)}, got {raw!r}")
    return mode


@dataclass(frozen=True)
class Verdict:
    """What pre-flight means for one reconcile pass: status to record, events, and whether to stop.

    `stop` is "permanent" (the model would not serve: no Cloud Run write until the spec changes),
    "transient" (storage could not be read: retry with backoff) or "" (deploy)."""

    model: Mapping[str, Any] | None  # status.model
    condition: Condition | None  # ModelChecked
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    stop: str = ""
    reason: str = ""  # Ready's reason when stopping
    message: str = ""

    def record(self, status: dict[str, Any], previous: Mapping[str, Any], *, now: str,
               generation: int) -> dict[str, Any]:
        """`status` with status.model and the ModelChecked condition (its transition time kept)."""
        out = {**status}
        if self.model is not None:
            out["model"] = dict(self.model)
        if self.condition is not None:
            (cond,) = merge(previous.get("conditions"), [self.condition], now=now, generation=generation)
            rank = {kind: i for i, kind in enumerate(ORDER)}
            conds = [c for c in out.get("conditions", []) if c.get("type") != MODEL_CHECKED] + [cond]
            out["conditions"] = sorted(conds, key=lambda c: rank.get(c.get("type", ""), len(ORDER)))
        return out


class ModelCheck:
    """Pre-flight as the reconciler and `tfms apply` run it, once per spec generation.

    `enforce` stops a model that would not serve before any Cloud Run write, and retries when
    storage is unavailable; `warn` records and reports the same findings but always deploys.
    Missing credentials never block, in either mode: the operator's identity is not the one
    the revision reads the model with, a laptop pointing at an emulator has none, and Cloud Run
    reports a model its revision cannot load anyway. The condition says the model was not
    checked and why. The same holds for other permission errors (StorageError, not blocking);
    a missing bucket or an empty path is a model that would not serve.
    """

    def __init__(self, mode: str = "enforce", reader_factory: ReaderFactory | None = None,
                 clock: Callable[[], float] = time.monotonic, *, local: bool = False) -> None:
        self.mode = model_check_mode(mode)
        self.local = local  # revisions run on this machine: a missing local path is an error
        self._factory = reader_factory
        self._clock = clock
        self._gcs: GcsReader | None = None  # one client for every check: credentials are looked up once
        self._no_credentials: tuple[float, str] | None = None  # (until, message)

    @classmethod
    def for_mode(cls, mode: str | None, *, local: bool = False) -> ModelCheck | None:
        """The policy for a mode; None for `off`, so callers skip pre-flight entirely."""
        checked = model_check_mode(mode)
        return None if checked == "off" else cls(checked, local=local)

    def reader(self, base_path: str) -> ModelReader:
        if self._factory is not None:
            return self._factory(base_path)
        if base_path.startswith("gs://"):
            if self._gcs is None:
                self._gcs = GcsReader()
            return self._gcs
        return LocalReader()

    async def check(self, svc: TFModelService) -> Preflight:
        base = svc.model.base_path
        missing = self._no_credentials
        if base.startswith("gs://") and missing is not None and self._clock() < missing[0]:
            return Preflight(base, error=missing[1], error_kind=CredentialsMissing.__name__)
        result = await preflight_async(svc, self.reader, local=self.local)
        if result.error_kind == CredentialsMissing.__name__:
            self._no_credentials = (self._clock() + CREDENTIALS_RETRY_SECONDS, result.error)
        return result

    async def verdict(self, svc: TFModelService, generation: int = 0,
                      previous: Mapping[str, Any] | None = None) -> Verdict:
        """Check the model if this generation was not checked yet, else repeat what was found."""
        previous = previous or {}
        if not needs_check(generation, previous):
            return self._carried(previous)
        return self.judge(await self.check(svc), generation, previous)

    def judge(self, result: Preflight, generation: int, previous: Mapping[str, Any]) -> Verdict:
        cond = result.condition()
        enforce = self.mode == "enforce"
        if result.transient:  # not recorded for this generation: the next pass reads again
            said = any(isinstance(c, Mapping) and c.get("type") == MODEL_CHECKED and c.get("reason") == cond.reason
                       for c in previous.get("conditions") or [])
            events = [] if enforce or said else [("Warning", "ModelNotChecked", cond.message)]
            return Verdict(previous.get("model"), cond, events, "transient" if enforce else "",
                           "StorageUnavailable", f"reading the model failed, will retry: {result.error}")
        model = result.status(generation)
        if result.would_not_serve:
            message = f"the model at {result.base_path} would not serve: {cond.message}"  # as _carried says it
            event = ("Warning", "ModelInvalid", message + ("" if enforce else " (TFMS_MODEL_CHECK=warn: deploying "
                                                                               "anyway)"))
            return Verdict(model, cond, [event], "permanent" if enforce else "", "ModelInvalid", message)
        if cond.status == TRUE:
            kind, reason = ("Warning", "ModelWarning") if result.warnings else ("Normal", "ModelChecked")
            return Verdict(model, cond, [(kind, reason, cond.message)])
        if result.skipped:
            return Verdict(model, cond)
        return Verdict(model, cond, [("Warning", "ModelNotChecked", cond.message)])

    def _carried(self, previous: Mapping[str, Any]) -> Verdict:
        """This generation was checked: keep its findings (and a refusal) without reading storage."""
        old = next((c for c in previous.get("conditions") or [] if isinstance(c, Mapping)
                    and c.get("type") == MODEL_CHECKED), None)
        cond = Condition(MODEL_CHECKED, str(old.get("status", UNKNOWN)), str(old.get("reason", "")),
                         str(old.get("message", ""))) if old else None
        if self.mode == "enforce" and cond is not None and cond.status == FALSE and cond.reason == "ModelInvalid":
            return Verdict(previous.get("model"), cond, stop="permanent", reason="ModelInvalid",
                           message=f"the model at {previous['model'].get('basePath', '')} would not serve: "
                                   f"{cond.message}")
        return Verdict(previous.get("model"), cond)


__all__ = ["MODEL_CHECK_ENV", "ModelCheck", "Preflight", "Verdict", "expectation", "model_check_mode", "needs_check",
           "preflight", "preflight_async", "startup_window_seconds"]
