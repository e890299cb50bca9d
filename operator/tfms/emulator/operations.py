"""Long-running operation bookkeeping (`google.longrunning.Operation`).

Operations are named `{parent}/operations/{uuid}`; metadata and response are packed `Any`s
(the Service, or the Revision for DeleteRevision). The "finish only after N polls" knob
lives here: an operation created while the knob is N answers `done=False` to its creation
response and its first N GetOperation calls, whatever its real state.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

import grpc
from google.longrunning import operations_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from .errors import Violation, invalid, not_found


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass
class OperationRecord:
    name: str
    target: str  # the service (or revision) the operation is about
    metadata: any_pb2.Any
    polls_left: int = 0
    done: bool = False
    response: any_pb2.Any | None = None
    error: status_pb2.Status | None = None

    def to_pb(self, count_poll: bool = False) -> operations_pb2.Operation:
        reported_done = self.done and self.polls_left <= 0
        if count_poll and self.polls_left > 0:
            self.polls_left -= 1
        op = operations_pb2.Operation(name=self.name, done=reported_done)
        op.metadata.CopyFrom(self.metadata)
        if reported_done and self.error is not None:
            op.error.CopyFrom(self.error)
        elif reported_done and self.response is not None:
            op.response.CopyFrom(self.response)
        return op


class OperationStore:
    """Not thread-safe by itself: the control plane calls it under its lock."""

    def __init__(self) -> None:
        self._ops: dict[str, OperationRecord] = {}

    def create(self, parent: str, target: str, metadata: Message, polls: int) -> OperationRecord:
        record = OperationRecord(
            name=f"{parent}/operations/{uuid.uuid4()}", target=target, metadata=pack(metadata), polls_left=polls
        )
        self._ops[record.name] = record
        return record

    def restore(self, records: list[OperationRecord]) -> None:
        """Operations read back from a state file, in their original order."""
        self._ops = {op.name: op for op in records}

    def succeed(self, record: OperationRecord, response: Message) -> None:
        record.metadata = pack(response)
        record.response = pack(response)
        record.done = True

    def fail(self, record: OperationRecord, code: grpc.StatusCode, message: str) -> None:
        record.error = status_pb2.Status(code=code.value[0], message=message)
        record.done = True

    def get(self, name: str) -> OperationRecord:
        record = self._ops.get(name)
        if record is None:
            raise not_found(f"Operation '{name}' was not found.")
        return record

    def all(self) -> list[OperationRecord]:
        return list(self._ops.values())

    def delete(self, name: str) -> None:
        if self._ops.pop(name, None) is None:
            raise not_found(f"Operation '{name}' was not found.")

    def list(self, name: str, page_size: int, page_token: str) -> tuple[list[OperationRecord], str]:
        """Operations under `name` (a `projects/P/locations/L` parent) in creation order."""
        prefix = f"{name}/operations/" if name else ""
        matching = [op for op in self._ops.values() if op.name.startswith(prefix)]
        start = decode_token(page_token, "page_token")
        size = page_size if page_size > 0 else 100
        page = matching[start : start + size]
        more = start + size < len(matching)
        return page, encode_token(start + size) if more else ""


def encode_token(position: int) -> str:
    """An opaque page token carrying one integer (an offset or the last item's sequence key)."""
    return base64.urlsafe_b64encode(f"o:{position}".encode()).decode()


def decode_token(token: str, field: str) -> int:
    """The integer in a page token; a token we did not issue is the client's error."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if not text.startswith("o:"):
            raise ValueError(text)
        return max(0, int(text[2:]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid([Violation(field, "is not a valid page token")]) from exc
