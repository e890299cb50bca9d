"""The RPCs the emulator serves, shared by the gRPC and REST transports.

One table names each method's request type and the control-plane method behind it, and
one dispatcher applies the control knobs (call log, delay, injected fault) and turns any
unexpected exception into INTERNAL, so both transports behave identically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc
import proto
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2
from google.longrunning import operations_pb2
from google.protobuf.message import Message

from .control import Control, Metadata
from .errors import ApiError
from .plane import ControlPlane

log = logging.getLogger(__name__)

SERVICES = "google.cloud.run.v2.Services"
REVISIONS = "google.cloud.run.v2.Revisions"
OPERATIONS = "google.longrunning.Operations"


@dataclass(frozen=True)
class Rpc:
    service: str  # the gRPC service's full name
    name: str  # the short method name, as in the call log
    request_type: Any  # a proto-plus class (run_v2) or a pb2 class (IAM, longrunning)
    plane_method: str

    @property
    def proto_plus(self) -> bool:
        return isinstance(self.request_type, type) and issubclass(self.request_type, proto.Message)

    def decode(self, data: bytes) -> Any:
        """The request from gRPC wire bytes, in the type the control plane takes."""
        if self.proto_plus:
            return self.request_type.deserialize(data)
        return self.request_type.FromString(data)

    def new_pb(self) -> Message:
        """An empty protobuf request (REST decodes JSON into it)."""
        cls = self.request_type.pb() if self.proto_plus else self.request_type
        message: Message = cls()
        return message

    def wrap(self, pb: Message) -> Any:
        """The protobuf request in the type the control plane takes."""
        return self.request_type.wrap(pb) if self.proto_plus else pb


def to_pb(message: Any) -> Message:
    """The protobuf message behind a response (proto-plus or already pb2)."""
    if isinstance(message, proto.Message):
        pb: Message = type(message).pb(message)
        return pb
    assert isinstance(message, Message)
    return message


_TABLE = (
    Rpc(SERVICES, "CreateService", run_v2.CreateServiceRequest, "create_service"),
    Rpc(SERVICES, "GetService", run_v2.GetServiceRequest, "get_service"),
    Rpc(SERVICES, "ListServices", run_v2.ListServicesRequest, "list_services"),
    Rpc(SERVICES, "UpdateService", run_v2.UpdateServiceRequest, "update_service"),
    Rpc(SERVICES, "DeleteService", run_v2.DeleteServiceRequest, "delete_service"),
    Rpc(SERVICES, "GetIamPolicy", iam_policy_pb2.GetIamPolicyRequest, "get_iam_policy"),
    Rpc(SERVICES, "SetIamPolicy", iam_policy_pb2.SetIamPolicyRequest, "set_iam_policy"),
    Rpc(SERVICES, "TestIamPermissions", iam_policy_pb2.TestIamPermissionsRequest, "test_iam_permissions"),
    Rpc(REVISIONS, "GetRevision", run_v2.GetRevisionRequest, "get_revision"),
    Rpc(REVISIONS, "ListRevisions", run_v2.ListRevisionsRequest, "list_revisions"),
    Rpc(REVISIONS, "DeleteRevision", run_v2.DeleteRevisionRequest, "delete_revision"),
    Rpc(OPERATIONS, "GetOperation", operations_pb2.GetOperationRequest, "get_operation"),
    Rpc(OPERATIONS, "ListOperations", operations_pb2.ListOperationsRequest, "list_operations"),
    Rpc(OPERATIONS, "DeleteOperation", operations_pb2.DeleteOperationRequest, "delete_operation"),
    Rpc(OPERATIONS, "WaitOperation", operations_pb2.WaitOperationRequest, "wait_operation"),
)
RPCS: dict[str, Rpc] = {rpc.name: rpc for rpc in _TABLE}
METHOD_NAMES = frozenset(RPCS)


class Dispatcher:
    """Runs one RPC for either transport; every failure surfaces as an `ApiError`."""

    def __init__(self, plane: ControlPlane, control: Control) -> None:
        self._plane = plane
        self._control = control

    def call(self, method: str, request: Any, metadata: Metadata, transport: str) -> Any:
        fault = self._control.before_call(method, request, metadata, transport)
        if fault is not None:
            raise ApiError(fault[0], fault[1])
        try:
            return getattr(self._plane, RPCS[method].plane_method)(request)
        except ApiError:
            raise
        except Exception as exc:
            log.exception("emulator bug in %s", method)
            raise ApiError(grpc.StatusCode.INTERNAL, f"Emulator error in {method}: {exc}") from exc
