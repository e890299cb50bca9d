"""The control interface over HTTP: `/_emulator/...` on the REST port (a path Cloud Run never uses).

It exposes `Control` to other processes (out-of-process tests, `tfms up` users with curl):
JSON in, JSON out, errors in the same envelope as the API. The routes are `cli_options.ENDPOINTS`,
which also generates the index at `GET /_emulator` and `tfms emulator --help`.

`/metrics` stands in for Cloud Monitoring's per-revision request metrics, so canary analysis
can run locally: an executor that routes real requests offers `metrics` (`MetricsView`);
without one, revisions serve nothing and their figures are zero. `/history` is each service's
traffic and annotations over time (`history.ServiceHistory`), which Cloud Run does not keep but
a rollout timeline needs; the status page (`tfms.emulator.ui`) draws from both.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import grpc
from aiohttp import web
from google.protobuf import json_format

from .cli_options import CONTROL_PREFIX, ENDPOINTS, control_help
from .conditions import known_reason
from .control import Control
from .rpcs import METHOD_NAMES, to_pb
from .state import StateView

PREFIX = CONTROL_PREFIX


class BadControlRequest(ValueError):
    pass


class ControlNotFound(LookupError):
    """Answered with 404, like the API's NOT_FOUND."""


class MetricsView(Protocol):
    """Per-revision request figures by full name and Unix seconds (`tfms.emulator.local.RouterMetrics`)."""

    def knows(self, revision: str) -> bool: ...

    def stats(self, revision: str, start: float, end: float) -> dict[str, float | int | None]: ...

    def series(
        self, revision: str, start: float, end: float, step: float
    ) -> list[dict[str, float | int | None]]: ...


DEFAULT_METRICS_WINDOW_S = 300
MAX_SERIES_POINTS = 10_000


class NoTraffic:
    """The metrics of an executor that serves no requests (simulated revisions): all zero."""

    def knows(self, revision: str) -> bool:
        return False

    def stats(self, revision: str, start: float, end: float) -> dict[str, float | int | None]:
        return {"requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None}

    def series(self, revision: str, start: float, end: float, step: float) -> list[dict[str, float | int | None]]:
        step_s = round(step)
        if step_s < 1:
            raise BadControlRequest(f"step must be at least 1 second, got {step}")
        first, last = math.floor(start), math.floor(end)
        count = (last - first) // step_s + 1
        if count > MAX_SERIES_POINTS:
            raise BadControlRequest(f"{count} points asked for; at most {MAX_SERIES_POINTS} (use a larger step)")
        return [{"t": first + i * step_s, "requests": 0, "errors": 0, "p99_ms": None} for i in range(count)]


def _query_number(query: Mapping[str, str], key: str, default: float | None = None) -> float:
    raw = query.get(key)
    if raw is None and default is not None:
        return default
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadControlRequest(f"'{key}' must be a number (Unix seconds for times), got {raw!r}")
    return value


def _code(value: Any) -> grpc.StatusCode:
    """A status code from its name (`UNAVAILABLE`, any case) or number (14)."""
    for code in grpc.StatusCode:
        if value == code.value[0] or (isinstance(value, str) and value.upper() == code.name):
            if code is grpc.StatusCode.OK:
                break
            return code
    raise BadControlRequest(f"unknown or OK status code {value!r}; use a name such as UNAVAILABLE")


def _method(body: dict[str, Any]) -> str:
    method = str(body.get("method", "")).rsplit("/", 1)[-1]
    if method not in METHOD_NAMES:
        raise BadControlRequest(f"unknown RPC {method!r}; known: {', '.join(sorted(METHOD_NAMES))}")
    return method


def _number(body: dict[str, Any], key: str, default: float | None = None, minimum: float = 0) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise BadControlRequest(f"'{key}' must be a number >= {minimum}")
    return float(value)


def _reason(body: dict[str, Any], default: str) -> str:
    reason = str(body.get("reason", default))
    if not known_reason(reason):
        raise BadControlRequest(f"unknown Cloud Run reason {reason!r} (a CommonReason or RevisionReason name)")
    return reason


def _as_json(message: Any) -> Any:
    return json_format.MessageToDict(to_pb(message))


def state_document(state: StateView) -> dict[str, Any]:
    return {
        "services": {name: _as_json(svc) for name, svc in state.services.items()},
        "revisions": {name: _as_json(rev) for name, rev in state.revisions.items()},
        "policies": {name: _as_json(policy) for name, policy in state.policies.items()},
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


History = Callable[[str, float], list[dict[str, Any]] | None]
"""A service's recorded changes since a time, None for a service never seen (`ServiceHistory.changes`)."""


def control_routes(
    control: Control,
    snapshot: Callable[[], StateView],
    metrics: MetricsView | None = None,
    history: History | None = None,
) -> list[web.RouteDef]:
    """aiohttp routes for the control interface, acting on `control`; `metrics` from the executor,
    `history` from the control plane."""
    figures: MetricsView = metrics if metrics is not None else NoTraffic()

    async def body_of(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            raise BadControlRequest(f"the body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadControlRequest("the body must be a JSON object")
        return data

    def guarded(action: Callable[[dict[str, Any], web.Request], Any]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                result = action(await body_of(request), request)
            except (BadControlRequest, ValueError) as exc:
                error = {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}
                return web.json_response({"error": error}, status=400)
            except ControlNotFound as exc:
                error = {"code": 404, "message": str(exc), "status": "NOT_FOUND"}
                return web.json_response({"error": error}, status=404)
            return web.json_response(result if result is not None else {})

        return handle

    def index(body: dict[str, Any], request: web.Request) -> Any:
        return {
            "endpoints": [
                {"verb": verb, "path": PREFIX + path, "body": args, "description": text}
                for verb, path, args, text in ENDPOINTS
            ],
            "methods": sorted(METHOD_NAMES),
            "help": control_help(f"{request.scheme}://{request.host}"),
        }

    def fail_next(body: dict[str, Any], request: web.Request) -> Any:
        method, code = _method(body), _code(body.get("code", "UNAVAILABLE"))
        count = int(_number(body, "count", 1, minimum=1))
        message = str(body.get("message", "Injected fault."))
        control.fail_next(method, code, count, message)
        return {"method": method, "code": code.name, "count": count, "message": message}

    def delay(body: dict[str, Any], request: web.Request) -> Any:
        method, seconds = _method(body), _number(body, "seconds")
        control.delay(method, seconds)
        return {"method": method, "seconds": seconds}

    def fail_next_revision(body: dict[str, Any], request: web.Request) -> Any:
        reason = _reason(body, "CONTAINER_MISSING")
        message = str(body.get("message", "Image not found."))
        control.fail_next_revision(reason, message)
        return {"reason": reason, "message": message}

    def fail_image(body: dict[str, Any], request: web.Request) -> Any:
        image = str(body.get("image", ""))
        if not image:
            raise BadControlRequest("'image' is required")
        reason = _reason(body, "CONTAINER_MISSING")
        control.fail_revisions_with_image(image, reason, str(body.get("message", "")))
        return {"image": image, "reason": reason}

    def clear_image_failure(body: dict[str, Any], request: web.Request) -> Any:
        control.clear_image_failure(str(body.get("image", "")))
        return {"image": body.get("image", "")}

    def fail_next_operation(body: dict[str, Any], request: web.Request) -> Any:
        code = _code(body.get("code", "INTERNAL"))
        message = str(body.get("message", "Injected operation failure."))
        control.fail_next_operation(code, message)
        return {"code": code.name, "message": message}

    def operation_polls(body: dict[str, Any], request: web.Request) -> Any:
        polls = int(_number(body, "polls"))
        control.operation_polls(polls)
        return {"polls": polls}

    def calls(body: dict[str, Any], request: web.Request) -> Any:
        only = request.query.get("method")
        if only is not None:
            _method({"method": only})
        return {
            "calls": [
                {"method": c.method, "transport": c.transport, "request": _as_json(c.request)}
                for c in control.calls
                if only is None or c.method == only.rsplit("/", 1)[-1]
            ]
        }

    def clear_calls(body: dict[str, Any], request: web.Request) -> Any:
        control.clear_calls()

    def state(body: dict[str, Any], request: web.Request) -> Any:
        return state_document(snapshot())

    def reset(body: dict[str, Any], request: web.Request) -> Any:
        control.reset()

    def metrics_window(request: web.Request) -> tuple[str, float, float]:
        """The revision and window a metrics query names; 404 for a revision never heard of."""
        query = request.query
        service, revision = query.get("service", ""), query.get("revision", "")
        if not service or not revision:
            raise BadControlRequest("'service' (full resource name) and 'revision' (full or short name) are required")
        if "/" not in revision:  # the short name, as `tfms up` and Cloud Run's console show it
            revision = f"{service}/revisions/{revision}"
        if not revision.startswith(f"{service}/revisions/"):
            raise BadControlRequest(f"{revision!r} is not a revision of {service!r}")
        end = _query_number(query, "end", time.time())
        start = _query_number(query, "start", end - DEFAULT_METRICS_WINDOW_S)
        if start > end:
            raise BadControlRequest(f"'start' ({start}) is after 'end' ({end})")
        # A deleted revision that served within the window still has figures.
        if revision not in snapshot().revisions and not figures.knows(revision):
            raise ControlNotFound(f"Revision {revision} not found.")
        return revision, start, end

    def metrics_stats(body: dict[str, Any], request: web.Request) -> Any:
        return figures.stats(*metrics_window(request))

    def metrics_series(body: dict[str, Any], request: web.Request) -> Any:
        revision, start, end = metrics_window(request)
        step = _query_number(request.query, "step", 60.0)
        return {"revision": revision, "step": round(step), "points": figures.series(revision, start, end, step)}

    def service_history(body: dict[str, Any], request: web.Request) -> Any:
        service = request.query.get("service", "")
        if not service:
            raise BadControlRequest("'service' (a full resource name) is required")
        since = _query_number(request.query, "since", 0.0)
        changes = history(service, since) if history is not None else None
        if changes is None:
            raise ControlNotFound(f"Service {service} not found.")
        return {"service": service, "changes": changes}

    actions: dict[tuple[str, str], Callable[[dict[str, Any], web.Request], Any]] = {
        ("GET", ""): index,
        ("POST", "/fail-next"): fail_next,
        ("POST", "/delay"): delay,
        ("POST", "/fail-next-revision"): fail_next_revision,
        ("POST", "/fail-image"): fail_image,
        ("POST", "/clear-image-failure"): clear_image_failure,
        ("POST", "/fail-next-operation"): fail_next_operation,
        ("POST", "/operation-polls"): operation_polls,
        ("GET", "/calls"): calls,
        ("DELETE", "/calls"): clear_calls,
        ("GET", "/state"): state,
        ("POST", "/reset"): reset,
        ("GET", "/metrics"): metrics_stats,
        ("GET", "/metrics/series"): metrics_series,
        ("GET", "/history"): service_history,
    }
    assert set(actions) == {(verb, path) for verb, path, _, _ in ENDPOINTS}
    routes = [web.route(verb, PREFIX + path, guarded(action)) for (verb, path), action in actions.items()]
    routes.append(web.get(PREFIX + "/", guarded(index)))
    return routes
