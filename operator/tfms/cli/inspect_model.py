"""`tfms inspect-model PATH|gs://...`, and the model check behind `tfms validate --check-model`.

Shows what TF Serving will find at a model base path, read without tensorflow: version
directories, the policy's versions, each signature's inputs and outputs (names, dtypes,
shapes), warmup records, the REST URLs (with `/labels/` paths, B-026) and a sample
request, and every mistake that would stop the server, each with what to do about it.
Exit codes: 0 the model would serve, 1 it would not, 2 usage or storage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfms.api.defaults import Defaults
from tfms.api.errors import SpecInvalid
from tfms.api.validation import parse
from tfms.backends.errors import BackendError
from tfms.backends.storage import reader_for
from tfms.cli.files import Manifest
from tfms.modelcheck.check import Expectation, ModelReport, VersionReport, inspect_model
from tfms.modelcheck.requests import check_request, sample_request
from tfms.modelcheck.savedmodel import INIT_OP_SIGNATURE, Signature
from tfms.reconcile.preflight import preflight

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
SAMPLE_MAX_CHARS = 400  # longer samples are printed only with --sample


def _label(text: str) -> tuple[str, int]:
    label, sep, version = text.partition("=")
    if not sep or not version.isdigit():
        raise argparse.ArgumentTypeError(f"expected LABEL=VERSION, got {text!r}")
    return label, int(version)


def add_inspect_model_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `inspect-model` on the `tfms` subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "inspect-model", help="check a model base path (local or gs://) the way TF Serving will load it",
        description="Reads saved_model.pb without tensorflow. Exit 0: the model would serve; 1: it would not; "
        "2: usage or storage error. gs:// paths use Application Default Credentials (or TFMS_STORAGE_ENDPOINT).")
    p.add_argument("path", metavar="PATH|gs://BUCKET/PREFIX", help="the base path holding numeric version dirs")
    p.add_argument("--version", type=int, help="the pinned version (spec.model.version)")
    p.add_argument("--label", type=_label, action="append", default=[], metavar="LABEL=VERSION",
                   help="a version label (spec.model.versionLabels); repeatable")
    p.add_argument("--signature", default="", help="the signature clients call (default serving_default)")
    p.add_argument("--tags", default="serve", help="--saved_model_tags, comma-separated (default serve)")
    p.add_argument("--no-warmup", action="store_true", help="as with spec.runtime.warmup: false")
    p.add_argument("--model-name", default="", help="the model name for the URLs shown (default: the last path "
                   "component)")
    p.add_argument("--sample", action="store_true", help="print the full sample request, however large")
    p.add_argument("--check-request", metavar="FILE", help="check a :predict request body (JSON file, - for "
                   "stdin) against the signature")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_inspect_model)
    return p


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _signature_lines(name: str, sig: Signature) -> list[str]:
    method = f" method {sig.method_name}" if sig.method_name else ""
    lines = [f"    signature {name} (:{sig.kind}){method}"]
    for kind, tensors in (("in ", sig.inputs), ("out", sig.outputs)):
        for alias, spec in tensors.items():
            encoding = "" if spec.dense else f" [{spec.encoding}]"
            lines.append(f"      {kind} {alias:<20} {spec.dtype:<10} {spec.shape_text()}{encoding}")
    return lines


def _version_lines(v: VersionReport) -> list[str]:
    head = f"  version {v.version}: {v.path}/"
    if not v.saved_model_file:
        return [head]
    generation = f", generation {v.saved_model_generation}" if v.saved_model_generation else ""
    tf = f", TensorFlow {v.tensorflow_version}" if v.tensorflow_version else ""
    lines = [f"{head} {v.saved_model_file}{generation}, {_size(v.size_bytes)} in {v.files} files{tf}"]
    for name, sig in v.signatures.items():
        if name != INIT_OP_SIGNATURE:
            lines.extend(_signature_lines(name, sig))
    if v.warmup is not None:
        lines.append(f"    warmup: {v.warmup.records} record(s)")
    return lines


def _urls(report: ModelReport, model: str) -> list[str]:
    served = report.signature()
    verb = served.kind if served else "predict"
    lines = [f"    POST /v1/models/{model}:{verb}   (version {report.served_version})"]
    lines += [f"    POST /v1/models/{model}/labels/{label}:{verb}   (version {version})"
              for label, version in sorted(report.expect.labels.items())]
    return lines


def render_report(report: ModelReport, model: str, full_sample: bool) -> str:
    dirs = report.dirs
    lines = [f"{report.base_path}: {'ok' if report.ok else f'{len(report.errors)} error(s)'}"]
    if dirs is not None:
        ignored = f" (ignored: {', '.join(d + '/' for d in dirs.ignored)})" if dirs.ignored else ""
        lines.append(f"  versions: {', '.join(map(str, sorted(dirs.versions))) or 'none'}{ignored}")
        if report.policy_versions:
            policy = f"specific {list(report.policy_versions)}"
        else:
            policy = "latest (a new version directory changes what is served: pin spec.model.version)"
        served = report.served_version if report.served_version is not None else "nothing"
        lines.append(f"  policy: {policy}; requests without a version get {served}")
    for _, version in sorted(report.versions.items()):
        lines.extend(_version_lines(version))
    sig = report.signature()
    if report.ok and sig is not None:
        lines.append("  requests:")
        lines.extend(_urls(report, model))
        sample = json.dumps(sample_request(sig, report.expect.signature_name))
        if len(sample) <= SAMPLE_MAX_CHARS or full_sample:
            lines.append(f"    body: {sample}")
        else:
            lines.append(f"    body: {len(sample)} characters of JSON (--sample prints it)")
    if report.issues:
        lines.append("  findings:")
        lines.extend(f"    - {issue}" for issue in report.issues)
    return "\n".join(lines)


def _read_request(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return json.loads(text)


def cmd_inspect_model(args: argparse.Namespace) -> int:
    base: str = args.path
    if not base.startswith("gs://"):
        base = str(Path(base).resolve())
        if not os.path.isdir(base):
            why = "is not a directory (a model is a directory of version subdirectories)" \
                if os.path.exists(base) else "no such directory"
            print(f"error: {args.path}: {why}", file=sys.stderr)
            return EXIT_USAGE
    expect = Expectation(version=args.version, labels=dict(args.label), signature_name=args.signature,
                         tags=tuple(t for t in args.tags.split(",") if t), warmup=not args.no_warmup)
    try:
        report = inspect_model(reader_for(base), base, expect)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    model = args.model_name or base.rstrip("/").rsplit("/", 1)[-1]
    problems: list[str] = []
    if args.check_request:
        sig = report.signature()
        try:
            doc = _read_request(args.check_request)
        except (OSError, ValueError) as exc:
            print(f"error: {args.check_request}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        problems = [f"{p.severity}: {p}" for p in check_request(doc, sig)] if sig else []
    if args.output == "json":
        doc = report.as_json()
        sig = report.signature()
        if sig is not None:
            doc["sampleRequest"] = sample_request(sig, report.expect.signature_name)
        if args.check_request:
            doc["requestProblems"] = problems
        print(json.dumps(doc, indent=2))
    else:
        print(render_report(report, model, args.sample))
        if args.check_request:
            print(f"request {args.check_request}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
            for problem in problems:
                print(f"  - {problem}")
    failed = not report.ok or any(p.startswith("error") for p in problems)
    return EXIT_INVALID if failed else EXIT_OK


def add_check_model_flag(p: argparse.ArgumentParser) -> None:
    """`tfms validate --check-model`."""
    p.add_argument("--check-model", action="store_true",
                   help="also read each model (local or gs://) and check it the way TF Serving will load it")


def check_models(manifests: Sequence[Manifest], defaults: Defaults) -> int:
    """Pre-flight every valid manifest's model; prints findings; returns how many would not serve."""
    bad = 0
    for m in manifests:
        try:
            svc = parse(m.obj, defaults, m.source)
        except SpecInvalid:
            continue  # already reported by validation
        result = preflight(svc)
        state = "model ok" if result.ok and not result.skipped else (
            "model would not serve" if result.would_not_serve else "model not checked")
        print(f"{m.source}: {state} ({svc.model.base_path})")
        for line in result.lines():
            if not line.startswith("info"):
                print(f"  - {line}")
        bad += 0 if result.ok else 1
    return bad
