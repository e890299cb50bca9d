"""gRPC wiring: generic method handlers for Services, Revisions and Operations.

Requests are decoded with the same proto-plus / pb2 classes the gapic client encodes with
(read from the installed transports), so the unmodified client works unchanged. Errors
carry a `google.rpc.Status` with `BadRequest` field violations in the standard
`grpc-status-details-bin` trailer, which google-api-core exposes as `exc.details`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from .errors import ApiError, status_of
from .rpcs import METHOD_NAMES, RPCS, Dispatcher, Rpc, to_pb

__all__ = ["METHOD_NAMES", "generic_handlers"]


def _encode(message: Any) -> bytes:
    data: bytes = to_pb(message).SerializeToString()
    return data


def _abort(context: grpc.ServicerContext, error: ApiError) -> None:
    status = status_of(error)
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(error.code, error.message)


def _handler(rpc: Rpc, dispatcher: Dispatcher) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        metadata = tuple((m.key, m.value) for m in context.invocation_metadata() or ())
        try:
            return dispatcher.call(rpc.name, request, metadata, "grpc")
        except ApiError as error:
            _abort(context, error)

    return handle


def generic_handlers(dispatcher: Dispatcher) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for rpc in RPCS.values():
        by_service.setdefault(rpc.service, {})[rpc.name] = grpc.unary_unary_rpc_method_handler(
            _handler(rpc, dispatcher), request_deserializer=rpc.decode, response_serializer=_encode
        )
    return [grpc.method_handlers_generic_handler(service, table) for service, table in by_service.items()]
