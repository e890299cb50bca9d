"""`tfms emulator` options and help: the REST port, the state file, and the control interface.

Deliberately light (argparse and os only) so the CLI can build its parser without importing
gRPC or the Cloud Run client. `ENDPOINTS` is the one table of the `/_emulator` control API:
`control_api` serves it, and the help text and the index document are generated from it.
"""

from __future__ import annotations

import argparse
import os

CONTROL_PREFIX = "/_emulator"
UI_PATH = CONTROL_PREFIX + "/ui/"
DEFAULT_REST_PORT = 8090

# (verb, path under CONTROL_PREFIX, JSON body or query, what it does)
ENDPOINTS: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "", "", "this list, as JSON"),
    ("POST", "/fail-next", '{"method", "code", "count": 1, "message"}', "fail the next N calls of an RPC"),
    ("POST", "/delay", '{"method", "seconds"}', "delay every call of an RPC (0 removes it)"),
    ("POST", "/fail-next-revision", '{"reason", "message"}', "the next new revision fails"),
    ("POST", "/fail-image", '{"image", "reason", "message"}', "every new revision of an image fails"),
    ("POST", "/clear-image-failure", '{"image"}', "stop failing that image"),
    ("POST", "/fail-next-operation", '{"code", "message"}', "the next mutation's operation ends in that error"),
    ("POST", "/operation-polls", '{"polls"}', "new operations finish only after N polls"),
    ("GET", "/calls", "?method=RPC", "RPCs received (method, transport, request)"),
    ("DELETE", "/calls", "", "forget the call log"),
    ("GET", "/state", "", "all services, revisions and IAM policies"),
    ("GET", "/metrics", "?service=S&revision=R&start=T&end=T", "a revision's requests, 5xx, p50/p99 ms"),
    ("GET", "/metrics/series", "?service=S&revision=R&start=T&end=T&step=SEC", "the same per step, for graphs"),
    ("GET", "/history", "?service=S&since=T", "a service's traffic and annotation changes, timestamped"),
    ("POST", "/reset", "", "drop every fault, delay and the call log"),
)


def control_help(base_url: str = "http://127.0.0.1:REST_PORT") -> str:
    """The control interface in a few lines (for `--help` and the REST index)."""
    width = max(len(f"{verb} {CONTROL_PREFIX}{path}") for verb, path, _, _ in ENDPOINTS)
    rows = [
        f"  {f'{verb} {CONTROL_PREFIX}{path}':<{width}}  {text}" + (f"  {args}" if args else "")
        for verb, path, args, text in ENDPOINTS
    ]
    return "\n".join(
        [
            f"control interface (JSON over HTTP on the REST port, under {CONTROL_PREFIX}):",
            *rows,
            "  methods are RPC names (GetService, CreateService, GetOperation, ...), codes are gRPC status",
            "  names (UNAVAILABLE, RESOURCE_EXHAUSTED, ...), reasons are Cloud Run reason enums",
            "  (CONTAINER_MISSING, HEALTH_CHECK_CONTAINER_ERROR, ...). Metrics take full resource names and",
            "  Unix seconds (end defaults to now, start to end - 300), as the local router saw the requests;",
            "  simulated revisions serve nothing, so theirs are zero. A status page (services, traffic, live",
            f"  request figures, rollout timelines) is at {base_url}{UI_PATH}. For example:",
            f"  curl -X POST {base_url}{CONTROL_PREFIX}/fail-next \\",
            '       -d \'{"method": "GetService", "code": "UNAVAILABLE", "count": 2}\'',
        ]
    )


EMULATOR_DESCRIPTION = (
    "A local Cloud Run Admin API v2. The unmodified google-cloud-run client works against it over\n"
    "gRPC (--port) and over REST (--rest-port; transport='rest' with\n"
    "ClientOptions(api_endpoint='http://HOST:REST_PORT')). It follows Cloud Run's documented\n"
    "behaviour and can be made to fail the way Cloud Run fails."
)

EMULATOR_EPILOG = (
    control_help()
    + "\n\nstate (--state FILE): services, revisions (with their templates and readiness), IAM policies,"
    + "\n  generations, etags and operations are kept; each change is written atomically before the"
    + "\n  call returns. On restart ready revisions are launched again and traffic routes restored."
    + "\n  Not kept: faults, delays, the call log, and calls that had not returned."
)


def rest_port(value: str) -> int | None:
    """`--rest-port`: a port, 0 for any free one, or `off`."""
    if value.lower() in ("off", "none", "-1"):
        return None
    rule = f"must be a port number 0-65535 or 'off' (--rest-port or $TFMS_EMULATOR_REST_PORT), got {value!r}"
    try:
        port = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(rule) from exc
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(rule)
    return port


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--rest-port` and `--state` to `tfms emulator`, with the control interface in its help."""
    parser.description = EMULATOR_DESCRIPTION
    parser.epilog = EMULATOR_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--rest-port",
        type=rest_port,
        # A string default is converted by `type` only when `tfms emulator` runs: a bad variable is a
        # usage error there, not a traceback while building every subcommand's parser.
        default=os.environ.get("TFMS_EMULATOR_REST_PORT") or str(DEFAULT_REST_PORT),
        metavar="PORT",
        help=f"REST transport and control interface port, 0 for any, 'off' for none "
        f"(default $TFMS_EMULATOR_REST_PORT or {DEFAULT_REST_PORT})",
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        default=os.environ.get("TFMS_EMULATOR_STATE") or None,
        help="keep services, revisions, IAM policies and operations in FILE across restarts "
        "(default $TFMS_EMULATOR_STATE; none: memory only)",
    )
