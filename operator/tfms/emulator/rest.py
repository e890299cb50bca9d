"""The Cloud Run Admin API v2 REST surface: HTTP bindings, proto3 JSON and error envelopes.

The routes are the `google.api.http` bindings of `google.cloud.run.v2` and of the
`google.longrunning` mixin, as the installed gapic REST transports send them (a test keeps
this table equal to theirs). A request is rebuilt the way the transcoding rules define it:
path variables, then the body (`*` is the whole request, a field name is that field), then
the remaining fields from query parameters (camelCase, dotted for nested fields). Nothing
here does I/O, so the rules can be tested alone; `http.py` serves them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .errors import ApiError, status_of
from .rpcs import RPCS, Rpc

# gRPC code -> HTTP status, as google.rpc.Code documents the mapping.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Standard system parameters Google's front end accepts on every call (not request fields).
SYSTEM_PARAMETERS = frozenset(
    {"$alt", "alt", "$fields", "fields", "key", "prettyPrint", "quotaUser", "access_token", "$callback", "callback"}
)

_OPERATION = "/v2/{name=projects/*/locations/*/operations/*}"

# (HTTP verb, URI template, body, RPC), from the installed transports' `_get_http_options()`.
BINDINGS: tuple[tuple[str, str, str, str], ...] = (
    ("POST", "/v2/{parent=projects/*/locations/*}/services", "service", "CreateService"),
    ("GET", "/v2/{name=projects/*/locations/*/services/*}", "", "GetService"),
    ("GET", "/v2/{parent=projects/*/locations/*}/services", "", "ListServices"),
    ("PATCH", "/v2/{service.name=projects/*/locations/*/services/*}", "service", "UpdateService"),
    ("DELETE", "/v2/{name=projects/*/locations/*/services/*}", "", "DeleteService"),
    ("GET", "/v2/{resource=projects/*/locations/*/services/*}:getIamPolicy", "", "GetIamPolicy"),
    ("POST", "/v2/{resource=projects/*/locations/*/services/*}:setIamPolicy", "*", "SetIamPolicy"),
    ("POST", "/v2/{resource=projects/*/locations/*/services/*}:testIamPermissions", "*", "TestIamPermissions"),
    ("GET", "/v2/{name=projects/*/locations/*/services/*/revisions/*}", "", "GetRevision"),
    ("GET", "/v2/{parent=projects/*/locations/*/services/*}/revisions", "", "ListRevisions"),
    ("DELETE", "/v2/{name=projects/*/locations/*/services/*/revisions/*}", "", "DeleteRevision"),
    ("GET", _OPERATION, "", "GetOperation"),
    ("GET", "/v2/{name=projects/*/locations/*}/operations", "", "ListOperations"),
    ("DELETE", _OPERATION, "", "DeleteOperation"),
    ("POST", _OPERATION + ":wait", "*", "WaitOperation"),
)

_VARIABLE = re.compile(r"\{([a-z_.]+)=([^}]+)\}")


def _segment_regex(pattern: str) -> str:
    """A path-template pattern as a regex: `*` is one segment, `**` any number."""
    parts = []
    for segment in pattern.split("/"):
        if segment == "**":
            parts.append(r"[^:]+")
        elif segment == "*":
            parts.append(r"[^/:]+")
        else:
            parts.append(re.escape(segment))
    return "/".join(parts)


@dataclass(frozen=True)
class Route:
    verb: str
    template: str
    body: str
    rpc: Rpc
    regex: re.Pattern[str]
    variables: tuple[str, ...]  # field paths, in group order

    @classmethod
    def compile(cls, verb: str, template: str, body: str, rpc: str) -> Route:
        variables: list[str] = []
        regex, last = "", 0
        for m in _VARIABLE.finditer(template):
            regex += re.escape(template[last : m.start()])
            regex += f"(?P<v{len(variables)}>{_segment_regex(m.group(2))})"
            variables.append(m.group(1))
            last = m.end()
        regex += re.escape(template[last:])
        return cls(verb, template, body, RPCS[rpc], re.compile(f"^{regex}$"), tuple(variables))

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.match(path)
        if m is None:
            return None
        return {field: m.group(f"v{i}") for i, field in enumerate(self.variables)}


ROUTES = tuple(Route.compile(*binding) for binding in BINDINGS)


def find_route(verb: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a request, with its path variables; None when nothing is bound there."""
    for route in ROUTES:
        if route.verb == verb:
            bound = route.match(path)
            if bound is not None:
                return route, bound
    return None


def _bad_payload(detail: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid JSON payload received. {detail}")


def _field(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    """A field by its JSON (camelCase) or proto name."""
    for field in descriptor.fields:
        if name in (field.json_name, field.name):
            return field
    return None


def _json_name(descriptor: Descriptor, path: str) -> str:
    """The camelCase form of a (possibly dotted) field path."""
    field = _field(descriptor, path.split(".", 1)[0])
    return field.json_name if field is not None else path


def _scalar(field: FieldDescriptor, value: str, key: str) -> Any:
    """A query-string value as proto3 JSON expects it (bools unquoted, enums by name or number)."""
    if field.type == FieldDescriptor.TYPE_BOOL:
        if value not in ("true", "false"):
            raise _bad_payload(f"Invalid value at '{key}' (TYPE_BOOL), \"{value}\"")
        return value == "true"
    if field.type == FieldDescriptor.TYPE_ENUM and value.lstrip("-").isdigit():
        return int(value)
    return value


def query_to_dict(descriptor: Descriptor, params: Iterable[tuple[str, str]], skip: Iterable[str]) -> dict[str, Any]:
    """Nested proto3 JSON from `a.b=v` query parameters; unknown names are refused as Google does."""
    skipped = set(skip)
    out: dict[str, Any] = {}
    for key, value in params:
        if key in SYSTEM_PARAMETERS or key in skipped:
            continue
        node, desc, parts = out, descriptor, key.split(".")
        for i, part in enumerate(parts):
            field = _field(desc, part) if desc is not None else None
            if field is None:
                raise _bad_payload(
                    f'Unknown name "{key}": Cannot bind query parameter. '
                    f"Field '{part}' could not be found in request message."
                )
            if i < len(parts) - 1:
                if field.message_type is None:
                    raise _bad_payload(f'Unknown name "{key}": Cannot bind query parameter.')
                node = node.setdefault(field.json_name, {})
                desc = field.message_type
            elif field.is_repeated:
                node.setdefault(field.json_name, []).append(_scalar(field, value, key))
            else:
                node[field.json_name] = _scalar(field, value, key)
    return out


def _set_path(message: Message, path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        message = getattr(message, name)
    setattr(message, leaf, value)


def decode_request(route: Route, bound: Mapping[str, str], body: bytes, query: Iterable[tuple[str, str]]) -> Any:
    """The request message an HTTP call stands for, in the type the control plane takes."""
    pb = route.rpc.new_pb()
    text = body.decode("utf-8", errors="replace").strip() if body else ""
    if route.body and text:
        target = pb if route.body == "*" else getattr(pb, route.body)
        try:
            json_format.Parse(text, target)
        except (json_format.ParseError, ValueError, TypeError) as exc:
            raise _bad_payload(str(exc)) from exc
    elif not route.body and text:
        raise _bad_payload("This method does not take a request body.")
    if route.body != "*":  # with a `*` body every field is in the body, none in the query
        taken = {*bound, route.body} - {""}  # bound by the path or the body: not query parameters
        skip = taken | {_json_name(pb.DESCRIPTOR, name) for name in taken}
        params = query_to_dict(pb.DESCRIPTOR, query, skip)
        if params:
            from_query = type(pb)()
            try:
                json_format.ParseDict(params, from_query)
            except (json_format.ParseError, ValueError, TypeError) as exc:
                raise _bad_payload(str(exc)) from exc
            pb.MergeFrom(from_query)
    for path, value in bound.items():
        _set_path(pb, path, value)
    return route.rpc.wrap(pb)


def wants_int_enums(query: Iterable[tuple[str, str]]) -> bool:
    """The gapic REST transports ask for numeric enums with `$alt=json;enum-encoding=int`."""
    return any(key in ("$alt", "alt") and "enum-encoding=int" in value for key, value in query)


def encode_message(message: Message, int_enums: bool) -> str:
    """Proto3 JSON: camelCase names, int64 as strings, defaults omitted."""
    text: str = json_format.MessageToJson(message, use_integers_for_enums=int_enums, indent=None)
    return text


def error_envelope(error: ApiError) -> tuple[int, str]:
    """Google's JSON error: `{"error": {"code": HTTP, "message", "status": NAME, "details"}}`."""
    status = json_format.MessageToDict(status_of(error))
    body: dict[str, Any] = {
        "code": HTTP_STATUS.get(error.code, 500),
        "message": error.message,
        "status": error.code.name,
    }
    if status.get("details"):
        body["details"] = status["details"]
    return body["code"], json.dumps({"error": body})


def not_bound(verb: str, path: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, f"The requested URL {path} was not found on this server ({verb}).")


__all__ = [
    "BINDINGS",
    "HTTP_STATUS",
    "ROUTES",
    "Route",
    "decode_request",
    "encode_message",
    "error_envelope",
    "find_route",
    "not_bound",
    "wants_int_enums",
]
