"""API errors raised by the control plane and turned into gRPC statuses or JSON error envelopes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2


class Violation(NamedTuple):
    """One bad field, named by its path in the request (e.g. `service.traffic[1].percent`)."""

    field: str
    description: str


class ApiError(Exception):
    """A Cloud Run API error: a gRPC status code, a message, and optional field violations."""

    def __init__(self, code: grpc.StatusCode, message: str, violations: Sequence[Violation] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.violations = tuple(violations)


def invalid(violations: Sequence[Violation]) -> ApiError:
    """INVALID_ARGUMENT listing every violation at once (clients fix them in one pass)."""
    text = "; ".join(f"Violation in {v.field}: {v.description}" for v in violations)
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, text, violations)


def not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def already_exists(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.ALREADY_EXISTS, message)


def aborted(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.ABORTED, message)


def failed_precondition(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message)


def status_of(error: ApiError) -> status_pb2.Status:
    """The `google.rpc.Status` both transports send: code, message, `BadRequest` violations."""
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    if error.violations:
        details = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(details)
        status.details.append(packed)
    return status
