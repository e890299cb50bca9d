"""API errors raised by the control plane and turned into gRPC statuses by the handlers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import grpc


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
