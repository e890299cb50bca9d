"""`tfms` subcommands. Exit codes: 0 ok, 1 invalid spec or not ready, 2 usage or I/O error."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import yaml

from tfms import logs
from tfms.api import names
from tfms.api.defaults import Defaults
from tfms.api.errors import SettingInvalid, SpecInvalid
from tfms.api.validation import validate
from tfms.backends.errors import BackendError
from tfms.cli.env import UsageError, env_log_level, env_port, env_seconds, log_level, port, positive_seconds
from tfms.cli.files import ManifestError, load

if TYPE_CHECKING:
    from tfms.api.errors import FieldError
    from tfms.api.model import TFModelService
    from tfms.reconcile.preflight import ModelCheck

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE
DEFAULT_EMULATOR_PORT = 8089


def _policies(files: Sequence[str]) -> list[dict[str, object]]:
    """TFModelServicePolicy objects from --policy files; an invalid policy is a usage error."""
    from tfms.api.guardrails import policy_errors

    policies: list[dict[str, object]] = []
    for m in load(list(files), kind=names.POLICY_KIND) if files else []:
        errors = policy_errors(m.obj)
        if errors:
            raise ManifestError(f"{m.source}: not a valid TFModelServicePolicy:\n"
                                + "\n".join(f"  - {e}" for e in errors))
        policies.append(m.obj)
    return policies


def cmd_validate(args: argparse.Namespace) -> int:
    """Every error of every manifest, including what `apply` refuses across them (one service twice)."""
    from tfms.api.guardrails import check_all
    from tfms.api.validation import duplicate_errors, parse

    defaults = Defaults.from_env(os.environ)
    policies = _policies(args.policy or [])
    manifests = load(args.files)
    found: dict[str, list[FieldError]] = {}
    parsed: list[tuple[str, TFModelService]] = []
    for m in manifests:
        found[m.source] = validate(m.obj, defaults)
        if not found[m.source]:
            parsed.append((m.source, parse(m.obj, defaults, m.source)))
            if policies:
                found[m.source] = check_all(policies, parsed[-1][1])
    for source, error in duplicate_errors(parsed):
        found[source].append(error)
    bad = 0
    for m in manifests:
        errors = found[m.source]
        if errors:
            bad += 1
            print(f"{m.source}: {len(errors)} error(s)")
            for e in errors:
                print(f"  - {e}")
        else:
            print(f"{m.source}: ok")
    if getattr(args, "check_model", False):
        from tfms.cli.inspect_model import check_models

        bad += check_models([m for m in manifests if not validate(m.obj, defaults)], defaults)
    return EXIT_INVALID if bad else EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from tfms.cli.apply import parse_all
    from tfms.render.formats import render_document
    from tfms.render.knative import KnativeUnsupported

    services = parse_all(load(args.files), Defaults.from_env(os.environ))
    try:
        docs = [render_document(svc, args.format) for svc in services]
    except KnativeUnsupported as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.output == "json":
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        print(yaml.safe_dump_all(docs, sort_keys=False), end="")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from tfms.api.defaults import Defaults as _Defaults
    from tfms.cli.apply import apply_all, parse_all, results_table, tag_lines
    from tfms.plan.convergence import Phase

    services = parse_all(load(args.files), _Defaults.from_env(os.environ))
    endpoint = args.endpoint or os.environ.get("TFMS_CLOUDRUN_ENDPOINT") or None
    from tfms.backends.metrics import metrics_source

    results = asyncio.run(apply_all(
        services, endpoint, wait=not args.no_wait, timeout=_timeout(args),
        interval=env_seconds(os.environ, "TFMS_POLL_INTERVAL", 1.0), metrics=metrics_source(args.metrics, endpoint),
        model_check=_model_check(args.check_model),
    ))
    print(results_table(results))
    for line in tag_lines(results):
        print(line)
    ok = all(r.state.phase is Phase.READY or r.state.reason == "RolloutPaused"
             or (args.no_wait and not r.state.done) for r in results)
    return EXIT_OK if ok else EXIT_INVALID


def _timeout(args: argparse.Namespace) -> float:
    """--timeout, else TFMS_APPLY_TIMEOUT (read here, not at parser build time, to name it if bad)."""
    return float(args.timeout) if args.timeout is not None else env_seconds(os.environ, "TFMS_APPLY_TIMEOUT", 600.0)


def _host(args: argparse.Namespace) -> str:
    """--host, else TFMS_EMULATOR_HOST: one line naming it if nothing can listen there."""
    from tfms.emulator.listen import check_listenable

    host = args.host or os.environ.get("TFMS_EMULATOR_HOST") or "127.0.0.1"
    try:
        check_listenable(host, "--host" if args.host else "$TFMS_EMULATOR_HOST", "the emulator")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return host


def _port(args: argparse.Namespace) -> int:
    """--port, else TFMS_EMULATOR_PORT."""
    if args.port is not None:
        return int(args.port)
    return env_port(os.environ, "TFMS_EMULATOR_PORT", DEFAULT_EMULATOR_PORT)


def _model_check(flag: bool | None, *, local: bool = False) -> ModelCheck | None:
    """--check-model / --no-check-model, else TFMS_MODEL_CHECK (enforce | warn | off; default enforce)."""
    from tfms.reconcile.preflight import MODEL_CHECK_ENV, ModelCheck, model_check_mode

    try:
        mode = model_check_mode(os.environ.get(MODEL_CHECK_ENV))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if flag is not None:
        mode = "off" if not flag else "enforce" if mode == "off" else mode
    return ModelCheck.for_mode(mode, local=local)


def _inspect(args: argparse.Namespace, server_check: bool) -> list:  # type: ignore[type-arg]
    from tfms.cli.apply import parse_all
    from tfms.cli.inspect import inspect_all, render_text

    services = parse_all(load(args.files), Defaults.from_env(os.environ))
    endpoint = args.endpoint or os.environ.get("TFMS_CLOUDRUN_ENDPOINT") or None
    results = asyncio.run(inspect_all(services, endpoint, server_check=server_check))
    if args.output == "json":
        print(json.dumps([r.as_json() for r in results], indent=2, default=str))
    else:
        print(render_text(results))
    return results


def cmd_diff(args: argparse.Namespace) -> int:
    """Exit codes as `kubectl diff`: 0 no differences, 1 differences, 2 errors."""
    results = _inspect(args, server_check=False)
    if any(r.error or r.action == "not-owned" for r in results):
        return EXIT_USAGE
    return EXIT_INVALID if any(r.action in ("create", "update") for r in results) else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    """0: everything would be accepted (changes or not); 1: something would be refused."""
    results = _inspect(args, server_check=True)
    if any(r.error for r in results):
        return EXIT_USAGE
    refused = [r for r in results if r.action == "not-owned" or r.server_check not in ("", "ok")]
    return EXIT_INVALID if refused else EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    from tfms.emulator import EmulatorConfig, serve_forever

    host, port = _host(args), _port(args)  # named before anything starts
    executor = None
    if args.local:
        from tfms.cli.up import local_executor

        executor = local_executor()
    config = EmulatorConfig(ready_delay=args.ready_delay, state_file=args.state)
    serve_forever(host, port, config, executor, rest_port=args.rest_port)
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    from tfms.cli.up import up

    return up(args.files, host=_host(args), port=_port(args), timeout=_timeout(args),
              model_check=_model_check(None, local=True))


def cmd_operator(args: argparse.Namespace) -> int:
    from tfms.handlers.run import run

    run(namespaces=args.namespace or (), standalone=args.standalone, peering=args.peering,
        liveness=args.liveness)
    return EXIT_OK


def cmd_crd(args: argparse.Namespace) -> int:
    from tfms.api.crd import crd, policy_crd

    print(yaml.safe_dump(policy_crd() if args.policy else crd(), sort_keys=False), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfms", description="Serve TensorFlow models on Google Cloud Run.")
    parser.add_argument("--log-level", type=log_level, default=None,
                        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default $TFMS_LOG_LEVEL or WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check TFModelService manifests; print every error")
    p.add_argument("files", nargs="+", metavar="FILE|DIR")
    p.add_argument("--policy", action="append", metavar="FILE|DIR",
                   help="also check against these TFModelServicePolicy guardrails (repeatable); each violation "
                        "names the policy and its rule")
    from tfms.cli.inspect_model import add_check_model_flag, add_inspect_model_parser

    add_check_model_flag(p)
    p.set_defaults(func=cmd_validate)
    add_inspect_model_parser(sub)

    p = sub.add_parser("render", help="print what a manifest becomes: a Cloud Run v2 Service (cloudrun), "
                       "YAML for `gcloud run services replace` (gcloud), or a Knative Service (knative)")
    p.add_argument("files", nargs="+", metavar="FILE|DIR")
    p.add_argument("--format", choices=["cloudrun", "gcloud", "knative"], default="cloudrun")
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("apply", help="make Cloud Run match the manifests, then wait until ready")
    p.add_argument("-f", "--filename", dest="files", action="append", required=True, metavar="FILE|DIR")
    p.add_argument("--endpoint", help="a Cloud Run emulator host:port (else TFMS_CLOUDRUN_ENDPOINT, "
                   "else Google Cloud with Application Default Credentials)")
    p.add_argument("--timeout", type=positive_seconds, default=None,
                   help="seconds to wait for each service to be ready (default $TFMS_APPLY_TIMEOUT or 600)")
    p.add_argument("--no-wait", action="store_true", help="write and return without waiting")
    p.add_argument("--metrics", default=os.environ.get("TFMS_METRICS_URL") or None,
                   help="per-revision metrics for canary analysis: a tfms emulator's /_emulator/metrics URL "
                        "(default TFMS_METRICS_URL, else Cloud Monitoring)")
    p.add_argument("--check-model", action=argparse.BooleanOptionalAction, default=None,
                   help="read each model (local or gs://) first and refuse one that would not serve "
                        "(default: TFMS_MODEL_CHECK, enforce unless it says warn or off)")
    p.set_defaults(func=cmd_apply)

    for name, func, help_text in (
        ("diff", cmd_diff, "show owned fields that differ between the manifests and Cloud Run "
                           "(exit 0 none, 1 differences, 2 error)"),
        ("plan", cmd_plan, "diff, then ask Cloud Run to validate each change (validate_only) "
                           "(exit 0 acceptable, 1 refused, 2 error)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-f", "--filename", dest="files", action="append", required=True, metavar="FILE|DIR")
        p.add_argument("--endpoint", help="a Cloud Run emulator host:port (else TFMS_CLOUDRUN_ENDPOINT, "
                       "else Google Cloud with Application Default Credentials)")
        p.add_argument("-o", "--output", choices=["text", "json"], default="text")
        p.set_defaults(func=func)

    from tfms.cli.rollout import add_parser as add_rollout_parser

    add_rollout_parser(sub)

    p = sub.add_parser("emulator", help="run the local Cloud Run Admin API v2 emulator")
    p.add_argument("--host", help="listen address (default $TFMS_EMULATOR_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=port, default=None,
                   help=f"gRPC port, 0 for any (default $TFMS_EMULATOR_PORT or {DEFAULT_EMULATOR_PORT})")
    p.add_argument("--local", action="store_true", help="run every ready revision as a local model server")
    p.add_argument("--ready-delay", type=float, default=0.0,
                   help="seconds a simulated revision takes to become ready")
    from tfms.emulator.cli_options import add_emulator_arguments  # light: no grpc import

    add_emulator_arguments(p)
    p.set_defaults(func=cmd_emulator)

    p = sub.add_parser("up", help="serve manifests locally: emulator + model servers + router")
    p.add_argument("files", nargs="+", metavar="FILE|DIR")
    p.add_argument("--host", help="listen address (default $TFMS_EMULATOR_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=port, default=None,
                   help="emulator port, for `tfms apply --endpoint` while up runs (0 picks one; "
                        f"default $TFMS_EMULATOR_PORT or {DEFAULT_EMULATOR_PORT})")
    p.add_argument("--timeout", type=positive_seconds, default=None,
                   help="seconds to wait for each service to be ready (default $TFMS_APPLY_TIMEOUT or 600)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("operator", help="run the Kubernetes operator (kopf); settings from TFMS_* variables",
                       description="Reconciles TFModelService objects into Cloud Run. Environment: "
                       "TFMS_CLOUDRUN_ENDPOINT (emulator host:port; default Google with ADC), TFMS_PROJECT, "
                       "TFMS_REGION, TFMS_RESYNC_SECONDS (60), TFMS_POLL_SECONDS (5), "
                       "TFMS_RETRY_INITIAL_SECONDS (2), TFMS_RETRY_MAX_SECONDS (300), "
                       "TFMS_MODEL_CHECK (enforce | warn | off).")
    p.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable); "
                   "default: cluster-wide")
    p.add_argument("--standalone", action="store_true", help="no peering (a single replica)")
    p.add_argument("--peering", default=os.environ.get("TFMS_PEERING") or None,
                   help="kopf peering object name for several replicas (high availability)")
    p.add_argument("--liveness", default=os.environ.get("TFMS_LIVENESS_ENDPOINT") or None,
                   help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    p.set_defaults(func=cmd_operator)

    p = sub.add_parser("crd", help="print the TFModelService CustomResourceDefinition")
    p.add_argument("--policy", action="store_true",
                   help="print the TFModelServicePolicy CRD instead (crds/tfmodelservicepolicy.yaml)")
    p.set_defaults(func=cmd_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. Our own errors end as one `error: ...` line and an exit code, never a
    traceback: a bad spec exits 1; a bad file, flag, variable, endpoint or port exits 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes positionals only before the first option: `rollout status -f FILE NAME` would
    # leave NAME over. A lone leftover word is the service name when none was given.
    if extra and args.command == "rollout" and args.name is None and len(extra) == 1 \
            and not extra[0].startswith("-"):
        args.name, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        logs.setup(args.log_level or env_log_level(os.environ))
        return int(args.func(args))
    except SpecInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (ManifestError, UsageError, SettingInvalid, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `tfms render ... | head`: the reader has all it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # the environment: a busy port, an unreadable file
        print(f"error: {exc.strerror if exc.strerror and exc.filename is None else exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
