"""`--state FILE`: the emulator's records as one JSON document, written atomically.

Kept: services (spec and status, generation, etag, uid, URLs), their revisions (with the
template each was made from and whether it became ready or failed, and why), IAM policies
with their etags, long-running operations (done or not, poll counts), and the counter that
orders lists. Not kept: the control knobs (faults, delays, the call log), the executor's
processes (ready and pending revisions are launched again on restart) and anything an RPC
had not yet acknowledged.

Every acknowledged change rewrites the whole file before the RPC returns: write a temp file
in the same directory, fsync it, `os.replace` it over the old one, fsync the directory. A
crash at any point leaves either the previous or the new complete document, never a torn
one. A lock file keeps a second emulator off the same state file.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import run_v2
from google.iam.v1 import policy_pb2
from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from .naming import parse_service
from .operations import OperationRecord
from .state import Phase, RevisionRecord, ServiceRecord

FORMAT = "tfms-emulator-state/1"


class StateFileError(RuntimeError):
    """The state file cannot be used (unreadable, another format, or in use)."""


def _dict(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = json_format.MessageToDict(message)
    return data


def _parse(data: dict[str, Any], message: Message) -> Any:
    json_format.ParseDict(data, message)
    return message


def _operation(op: OperationRecord) -> dict[str, Any]:
    pb = operations_pb2.Operation(name=op.name, done=op.done)
    pb.metadata.CopyFrom(op.metadata)
    if op.error is not None:
        pb.error.CopyFrom(op.error)
    elif op.response is not None:
        pb.response.CopyFrom(op.response)
    return {"operation": _dict(pb), "target": op.target, "pollsLeft": op.polls_left}


def _restore_operation(data: dict[str, Any]) -> OperationRecord:
    pb: operations_pb2.Operation = _parse(data["operation"], operations_pb2.Operation())
    return OperationRecord(
        name=pb.name,
        target=data["target"],
        metadata=pb.metadata,
        polls_left=int(data.get("pollsLeft", 0)),
        done=pb.done,
        response=pb.response if pb.HasField("response") else None,
        error=pb.error if pb.HasField("error") else None,
    )


def _revision(rrec: RevisionRecord) -> dict[str, Any]:
    return {
        "revision": _dict(run_v2.Revision.pb(rrec.revision)),
        "template": _dict(run_v2.RevisionTemplate.pb(rrec.template)),
        "seq": rrec.seq,
        "phase": rrec.phase.value,
        "reason": rrec.reason,
        "message": rrec.message,
    }


def _restore_revision(data: dict[str, Any]) -> RevisionRecord:
    return RevisionRecord(
        revision=run_v2.Revision.wrap(_parse(data["revision"], run_v2.Revision.pb()())),
        template=run_v2.RevisionTemplate.wrap(_parse(data["template"], run_v2.RevisionTemplate.pb()())),
        seq=int(data["seq"]),
        phase=Phase(data["phase"]),
        reason=data.get("reason", ""),
        message=data.get("message", ""),
    )


@dataclass
class Restored:
    services: dict[str, ServiceRecord]
    policies: dict[str, policy_pb2.Policy]
    operations: list[OperationRecord]
    seq: int


def encode(
    services: dict[str, ServiceRecord],
    policies: dict[str, policy_pb2.Policy],
    operations: list[OperationRecord],
    seq: int,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "seq": seq,
        "services": [
            {
                "service": _dict(run_v2.Service.pb(r.service)),
                "seq": r.seq,
                "revisions": [_revision(rr) for rr in r.revisions.values()],
                "pendingOperations": [op.name for op in r.pending_ops],
                "awaiting": r.awaiting,
                "urls": r.urls,
                "tagSeq": r.tag_seq,
            }
            for r in services.values()
        ],
        "policies": {name: _dict(policy) for name, policy in policies.items()},
        "operations": [_operation(op) for op in operations],
    }


def decode(document: dict[str, Any]) -> Restored:
    if document.get("format") != FORMAT:
        raise StateFileError(f"not a {FORMAT} document (format={document.get('format')!r})")
    operations = [_restore_operation(d) for d in document.get("operations", [])]
    by_name = {op.name: op for op in operations}
    services: dict[str, ServiceRecord] = {}
    for data in document.get("services", []):
        service = run_v2.Service.wrap(_parse(data["service"], run_v2.Service.pb()()))
        name = parse_service(service.name)
        if name is None:
            raise StateFileError(f"bad service name {service.name!r}")
        revisions = [_restore_revision(d) for d in data.get("revisions", [])]
        services[name.full] = ServiceRecord(
            service=service,
            name=name,
            seq=int(data["seq"]),
            revisions={rr.id: rr for rr in revisions},
            pending_ops=[by_name[n] for n in data.get("pendingOperations", []) if n in by_name],
            awaiting=data.get("awaiting", ""),
            urls=dict(data.get("urls", {})),
            tag_seq={tag: int(seq) for tag, seq in data.get("tagSeq", {}).items()},
        )
    policies = {name: _parse(p, policy_pb2.Policy()) for name, p in document.get("policies", {}).items()}
    return Restored(services, policies, operations, int(document.get("seq", 0)))


class StateFile:
    """One emulator's state file: locked while open, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            raise StateFileError(f"{self.path} is in use by another emulator") from exc

    def load(self) -> Restored | None:
        """The saved state, or None when there is no file yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            document = json.loads(text)
            return decode(document)
        except (ValueError, KeyError, TypeError, json_format.ParseError) as exc:
            raise StateFileError(f"cannot read emulator state from {self.path}: {exc}") from exc

    def save(self, document: dict[str, Any]) -> None:
        data = json.dumps(document, separators=(",", ":")).encode("utf-8")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
