"""Pre-flight: every mistake at a model base path that would stop TF Serving, found up front.

Each finding is an `Issue` with a stable code, a message saying what is wrong and what to do,
and a severity: `error` means TF Serving would fail to start or fail every request, so the
deploy is refused; `warning` means it would serve, but probably not as intended.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tfms.modelcheck import dtypes
from tfms.modelcheck.reader import FileInfo, ModelReader, join
from tfms.modelcheck.savedmodel import (
    DEFAULT_SIGNATURE,
    INIT_OP_SIGNATURE,
    SAVED_MODEL_PB,
    SAVED_MODEL_PBTXT,
    SavedModelError,
    Signature,
    parse_saved_model,
)
from tfms.modelcheck.versions import VersionDirs, version_dirs
from tfms.modelcheck.warmup import WARMUP_FILE, WarmupError, WarmupInfo, read_warmup

Severity = Literal["error", "warning", "info"]
_SHARD = re.compile(r"^variables/variables\.data-(\d+)-of-(\d+)$")
_MAX_LISTED = 8


@dataclass(frozen=True)
class Issue:
    code: str
    message: str
    severity: Severity = "error"
    version: int | None = None

    def __str__(self) -> str:
        where = f"version {self.version}: " if self.version is not None else ""
        return f"{self.severity}: {where}{self.message} [{self.code}]"

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                **({"version": self.version} if self.version is not None else {})}


@dataclass(frozen=True)
class Expectation:
    """What the spec asks of the model (all optional)."""

    version: int | None = None  # spec.model.version
    labels: Mapping[str, int] = field(default_factory=dict)  # spec.model.versionLabels
    signature_name: str = ""  # spec.model.signatureName; "" is serving_default
    tags: tuple[str, ...] = ("serve",)  # --saved_model_tags
    warmup: bool = True  # --enable_model_warmup


@dataclass
class VersionReport:
    version: int
    path: str
    size_bytes: int = 0
    files: int = 0
    saved_model_file: str = ""
    saved_model_generation: str = ""
    tensorflow_version: str = ""
    tag_sets: list[tuple[str, ...]] = field(default_factory=list)
    signatures: dict[str, Signature] = field(default_factory=dict)
    warmup: WarmupInfo | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "path": self.path, "sizeBytes": self.size_bytes, "files": self.files,
            "savedModel": self.saved_model_file,
            **({"generation": self.saved_model_generation} if self.saved_model_generation else {}),
            "tensorflowVersion": self.tensorflow_version, "tagSets": [list(t) for t in self.tag_sets],
            "signatures": {k: v.as_json() for k, v in self.signatures.items()},
            "warmupRecords": self.warmup.records if self.warmup else 0,
        }


@dataclass
class ModelReport:
    base_path: str
    expect: Expectation
    dirs: VersionDirs | None = None
    policy_versions: tuple[int, ...] = ()  # () with a latest policy
    served_version: int | None = None  # what a request without version or label gets
    versions: dict[int, VersionReport] = field(default_factory=dict)  # the ones inspected
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def signature_key(self) -> str:
        return self.expect.signature_name or DEFAULT_SIGNATURE

    def served(self) -> VersionReport | None:
        return self.versions.get(self.served_version) if self.served_version is not None else None

    def signature(self) -> Signature | None:
        served = self.served()
        return served.signatures.get(self.signature_key) if served else None

    def add(self, code: str, message: str, severity: Severity = "error", version: int | None = None) -> None:
        self.issues.append(Issue(code, message, severity, version))

    def as_json(self) -> dict[str, Any]:
        dirs = self.dirs
        return {
            "basePath": self.base_path,
            "ok": self.ok,
            "versionsFound": sorted(dirs.versions) if dirs else [],
            "ignoredDirectories": list(dirs.ignored) if dirs else [],
            "policy": {"specific": list(self.policy_versions)} if self.policy_versions else {"latest": 1},
            "servedVersion": self.served_version,
            "labels": dict(sorted(self.expect.labels.items())),
            "signatureName": self.signature_key,
            "versions": [v.as_json() for _, v in sorted(self.versions.items())],
            "issues": [i.as_json() for i in self.issues],
        }


def _names(items: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _versions_text(dirs: VersionDirs) -> str:
    return _names([str(v) for v in sorted(dirs.versions)]) or "none"


def inspect_model(reader: ModelReader, base_path: str, expect: Expectation | None = None) -> ModelReport:
    """Inspect `base_path` as TF Serving would load it under the spec's expectations."""
    expect = expect or Expectation()
    report = ModelReport(base_path.rstrip("/") or "/", expect)
    base = report.base_path
    listing = reader.list_dir(base)
    if not listing.dirs and not listing.files:
        report.add("base-path-empty", f"nothing found at {base}: the path does not exist or is empty")
        return report
    if listing.file(SAVED_MODEL_PB) or listing.file(SAVED_MODEL_PBTXT):
        report.add("base-path-is-version-dir",
                   f"{base} holds a SavedModel itself, but basePath must be the directory above numeric version "
                   f"directories: move the model to {join(base, '1')}/ (or point basePath at the parent if the "
                   "directory name is already a version number)")
        return report
    dirs = version_dirs(listing.dirs)
    report.dirs = dirs
    if not dirs.versions:
        found = f" (found {_names([d + '/' for d in listing.dirs])})" if listing.dirs else ""
        report.add("no-version-dirs",
                   f"no numeric version directory under {base}{found}; TF Serving ignores non-numeric names, so "
                   f"nothing would be served: put the SavedModel in {join(base, '1')}/")
        return report
    if dirs.ignored:
        report.add("ignored-directories", f"not version directories, ignored by TF Serving: "
                   f"{_names([d + '/' for d in dirs.ignored])}", "info")
    if dirs.negative:
        report.add("negative-version", f"negative version numbers are never served: {_names(list(dirs.negative))}",
                   "warning")
    for version, spellings in sorted(dirs.duplicates.items()):
        report.add("duplicate-version", f"{' and '.join(s + '/' for s in spellings)} are all version {version}; "
                   "TF Serving loads only one of them, so remove the others", "warning", version)

    wanted: set[int] = set(expect.labels.values())
    if expect.version is not None:
        wanted.add(expect.version)
        if expect.version not in dirs.versions:
            report.add("version-missing",
                       f"spec.model.version {expect.version} is not in {base} (versions there: "
                       f"{_versions_text(dirs)}); TF Serving would wait for it forever and the revision would never "
                       f"start: upload {join(base, str(expect.version))}/ first, or pin a version that is there",
                       version=expect.version)
    for label, version in sorted(expect.labels.items()):
        if version not in dirs.versions:
            report.add("label-version-missing",
                       f"label {label!r} points at version {version}, which is not in {base} (versions there: "
                       f"{_versions_text(dirs)}); TF Serving refuses to start: \"Request to assign label to version "
                       f"{version} ... which is not currently available for inference\"", version=version)
    report.policy_versions = tuple(sorted(wanted))
    # A specific policy loads exactly the wanted versions; latest loads the highest one. Either way a
    # request without version or label gets the highest loaded version.
    present = sorted(v for v in wanted if v in dirs.versions) if wanted else [max(dirs.versions)]
    report.served_version = max(present) if present else None
    for version in present:
        report.versions[version] = _inspect_version(reader, report, version, join(base, dirs.versions[version]))
    return report


def _inspect_version(reader: ModelReader, report: ModelReport, version: int, path: str) -> VersionReport:
    out = VersionReport(version, path)
    files = reader.walk(path)
    by_name = {f.path: f for f in files}
    out.files, out.size_bytes = len(files), sum(f.size for f in files)
    if not files:
        report.add("version-empty", f"{path}/ is empty: TF Serving cannot load it", version=version)
        return out
    saved: FileInfo | None = by_name.get(SAVED_MODEL_PB) or by_name.get(SAVED_MODEL_PBTXT)
    if saved is None:
        nested = [f.path for f in files if f.path.endswith("/" + SAVED_MODEL_PB)]
        hint = (f"; found {join(path, nested[0])}: the SavedModel is one directory too deep, move its contents up"
                if nested else f" (files: {_names([f.path for f in files])})")
        report.add("saved-model-missing", f"{path}/ has no {SAVED_MODEL_PB}{hint}", version=version)
        return out
    out.saved_model_file, out.saved_model_generation = saved.path, saved.generation
    try:
        info = parse_saved_model(reader.read(join(path, saved.path)), text=saved.path == SAVED_MODEL_PBTXT)
    except SavedModelError as exc:
        report.add("saved-model-invalid", f"{join(path, saved.path)} is {exc}", version=version)
        return out
    out.tag_sets = [m.tags for m in info.meta_graphs]
    graph = info.meta_graph(report.expect.tags)
    if graph is None:
        sets = _names(["{" + ",".join(t) + "}" for t in out.tag_sets])
        report.add("tags-missing", f"no MetaGraphDef tagged {{{','.join(report.expect.tags)}}} (the model has {sets}); "
                   "export it for serving (tags ['serve']) or set --saved_model_tags", version=version)
        return out
    out.tensorflow_version = graph.tensorflow_version
    out.signatures = dict(graph.signatures)
    _check_signature(report, version, graph.signatures)
    _check_variables(report, version, path, by_name)
    _check_warmup(reader, report, out, path, by_name)
    return out


def _check_signature(report: ModelReport, version: int, signatures: Mapping[str, Signature]) -> None:
    key = report.signature_key
    callable_sigs = sorted(k for k in signatures if k != INIT_OP_SIGNATURE)
    sig = signatures.get(key)
    if sig is None:
        have = _names(callable_sigs) or "none"
        fix = ("set spec.model.signatureName to one of them; clients must then send \"signature_name\" in each request"
               if not report.expect.signature_name else "fix spec.model.signatureName")
        report.add("signature-missing", f"signature {key!r} not found (the model has: {have}); requests without "
                   f"\"signature_name\" would fail with 'Serving signature name: \"{key}\" not found in signature "
                   f"def': {fix}", version=version)
        return
    if not sig.inputs:
        report.add("signature-no-inputs", f"signature {key!r} has no inputs, so :predict cannot call it",
                   version=version)
    for kind, tensors in (("input", sig.inputs), ("output", sig.outputs)):
        for alias, spec in sorted(tensors.items()):
            if not spec.dense:
                report.add("non-dense-tensor", f"{kind} {alias!r} of {key!r} is {spec.encoding}; TF Serving's REST "
                           "API handles dense tensors only", "warning", version)
            elif spec.dtype not in dtypes.JSON_DTYPES:
                report.add("rest-unsupported-dtype", f"{kind} {alias!r} of {key!r} is {spec.dtype}, which TF "
                           "Serving's REST JSON cannot carry (Unimplemented); use gRPC or change the signature",
                           "warning", version)


def _check_variables(report: ModelReport, version: int, path: str, by_name: Mapping[str, FileInfo]) -> None:
    shards: dict[int, set[int]] = {}
    for name in by_name:
        m = _SHARD.match(name)
        if m:
            shards.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    has_index = "variables/variables.index" in by_name
    if shards and not has_index:
        report.add("variables-incomplete", f"{path}/variables/ has data shards but no variables.index (an "
                   "interrupted upload?)", version=version)
    for total, have in sorted(shards.items()):
        missing = sorted(set(range(total)) - have)
        if missing:
            names = [f"variables.data-{i:05d}-of-{total:05d}" for i in missing]
            report.add("variables-incomplete", f"{path}/variables/ is missing {_names(names)} (an interrupted "
                       "upload?)", version=version)
    if has_index and not shards:
        report.add("variables-incomplete", f"{path}/variables/ has variables.index but no data shards",
                   version=version)


def _check_warmup(reader: ModelReader, report: ModelReport, out: VersionReport, path: str,
                  by_name: Mapping[str, FileInfo]) -> None:
    if WARMUP_FILE not in by_name:
        return
    if not report.expect.warmup:
        report.add("warmup-disabled", f"{WARMUP_FILE} is present but warmup is off (spec.runtime.warmup: false), so "
                   "the first requests pay the lazy-initialisation cost", "info", out.version)
        return
    try:
        out.warmup = read_warmup(reader.read(join(path, WARMUP_FILE)))
    except WarmupError as exc:
        report.add("warmup-invalid", f"{join(path, WARMUP_FILE)}: {exc}; TF Serving would refuse to load this "
                   "version", version=out.version)
        return
    report.add("warmup", f"{out.warmup.records} warmup record(s) will be replayed while the version loads",
               "info", out.version)
