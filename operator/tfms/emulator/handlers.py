"""gRPC wiring: generic method handlers for Services, Revisions and Operations.

Requests are decoded with the same proto-plus / pb2 classes the gapic client encodes with
(read from the installed transports), so the unmodified client works unchanged. Errors
carry a `google.rpc.Status` with `BadRequest` field violations in the standard
`grpc-status-details-bin` trailer, which google-api-core exposes as `exc.details`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2
from google.longrunning import operations_pb2
from google.rpc import error_details_pb2, status_pb2

from .control import Control
from .errors import ApiError
from .operations import pack
from .plane import ControlPlane

log = logging.getLogger(__name__)

SERVICES = "google.cloud.run.v2.Services"
REVISIONS = "google.cloud.run.v2.Revisions"
OPERATIONS = "google.longrunning.Operations"


def _pb_serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


# service -> method -> (request decoder, response encoder, plane method name)
_METHODS: dict[str, dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes], str]]] = {
    SERVICES: {
        "CreateService": (run_v2.CreateServiceRequest.deserialize, _pb_serialize, "create_service"),
        "GetService": (run_v2.GetServiceRequest.deserialize, run_v2.Service.serialize, "get_service"),
        "ListServices": (
            run_v2.ListServicesRequest.deserialize,
            run_v2.ListServicesResponse.serialize,
            "list_services",
        ),
        "UpdateService": (run_v2.UpdateServiceRequest.deserialize, _pb_serialize, "update_service"),
        "DeleteService": (run_v2.DeleteServiceRequest.deserialize, _pb_serialize, "delete_service"),
        "GetIamPolicy": (iam_policy_pb2.GetIamPolicyRequest.FromString, _pb_serialize, "get_iam_policy"),
        "SetIamPolicy": (iam_policy_pb2.SetIamPolicyRequest.FromString, _pb_serialize, "set_iam_policy"),
        "TestIamPermissions": (
            iam_policy_pb2.TestIamPermissionsRequest.FromString,
            _pb_serialize,
            "test_iam_permissions",
        ),
    },
    REVISIONS: {
        "GetRevision": (run_v2.GetRevisionRequest.deserialize, run_v2.Revision.serialize, "get_revision"),
        "ListRevisions": (
            run_v2.ListRevisionsRequest.deserialize,
            run_v2.ListRevisionsResponse.serialize,
            "list_revisions",
        ),
        "DeleteRevision": (run_v2.DeleteRevisionRequest.deserialize, _pb_serialize, "delete_revision"),
    },
    OPERATIONS: {
        "GetOperation": (operations_pb2.GetOperationRequest.FromString, _pb_serialize, "get_operation"),
        "ListOperations": (operations_pb2.ListOperationsRequest.FromString, _pb_serialize, "list_operations"),
        "DeleteOperation": (operations_pb2.DeleteOperationRequest.FromString, _pb_serialize, "delete_operation"),
        "WaitOperation": (operations_pb2.WaitOperationRequest.FromString, _pb_serialize, "wait_operation"),
    },
}

METHOD_NAMES = frozenset(m for methods in _METHODS.values() for m in methods)


def _abort(context: grpc.ServicerContext, error: ApiError) -> None:
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    if error.violations:
        details = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        status.details.append(pack(details))
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(error.code, error.message)


def _handler(method: str, target: Callable[[Any], Any], control: Control) -> Callable[[Any, Any], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        metadata = tuple((m.key, m.value) for m in context.invocation_metadata() or ())
        fault = control.before_call(method, request, metadata)
        if fault is not None:
            context.abort(fault[0], fault[1])
        try:
            return target(request)
        except ApiError as error:
            _abort(context, error)
        except Exception as exc:
            log.exception("emulator bug in %s", method)
            context.abort(grpc.StatusCode.INTERNAL, f"Emulator error in {method}: {exc}")

    return handle


def generic_handlers(plane: ControlPlane, control: Control) -> list[grpc.GenericRpcHandler]:
    handlers = []
    for service, methods in _METHODS.items():
        table = {
            name: grpc.unary_unary_rpc_method_handler(
                _handler(name, getattr(plane, attr), control),
                request_deserializer=decode,
                response_serializer=encode,
            )
            for name, (decode, encode, attr) in methods.items()
        }
        handlers.append(grpc.method_handlers_generic_handler(service, table))
    return handlers
