"""The control interface over HTTP: `/_emulator/...` on the REST port (a path Cloud Run never uses).

It exposes `Control` to other processes (out-of-process tests, `tfms up` users with curl):
JSON in, JSON out, errors in the same envelope as the API. The routes are `cli_options.ENDPOINTS`,
which also generates the index at `GET /_emulator` and `tfms emulator --help`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

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


def control_routes(control: Control, snapshot: Callable[[], StateView]) -> list[web.RouteDef]:
    """aiohttp routes for the control interface, acting on `control`."""

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
    }
    assert set(actions) == {(verb, path) for verb, path, _, _ in ENDPOINTS}
    routes = [web.route(verb, PREFIX + path, guarded(action)) for (verb, path), action in actions.items()]
    routes.append(web.get(PREFIX + "/", guarded(index)))
    return routes
