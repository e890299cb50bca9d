"""The emulator's records, and the read-only snapshot tests look at.

Records hold live proto-plus messages; they are only touched under the control plane's
lock, and anything handed out is a copy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.cloud import run_v2
from google.iam.v1 import policy_pb2
from google.longrunning import operations_pb2

from .naming import ServiceName
from .operations import OperationRecord

M = TypeVar("M")

# Service fields the server owns; a client's values for them are ignored, and they are not
# part of the "spec" whose change bumps `generation`.
SERVICE_OUTPUT_FIELDS = (
    "uid",
    "generation",
    "create_time",
    "update_time",
    "delete_time",
    "expire_time",
    "creator",
    "last_modifier",
    "urls",
    "observed_generation",
    "terminal_condition",
    "conditions",
    "latest_ready_revision",
    "latest_created_revision",
    "traffic_statuses",
    "uri",
    "satisfies_pzs",
    "threat_detection_enabled",
    "reconciling",
    "etag",
)


def clone(message: M) -> M:
    """A deep copy of a proto-plus message."""
    cls: Any = type(message)
    copied: M = cls.deserialize(cls.serialize(message))
    return copied


def spec_of(service: run_v2.Service) -> run_v2.Service:
    """The client-settable part of a service (what `generation` tracks)."""
    spec = clone(service)
    pb = run_v2.Service.pb(spec)
    for name in SERVICE_OUTPUT_FIELDS:
        pb.ClearField(name)
    return spec


def same(a: Any, b: Any) -> bool:
    """Structural equality of two proto-plus messages of one type."""
    cls: Any = type(a)
    return bool(cls.pb(a) == cls.pb(b))


class Phase(enum.Enum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@dataclass
class RevisionRecord:
    revision: run_v2.Revision
    template: run_v2.RevisionTemplate  # as stored (defaults applied); compared for name reuse
    seq: int
    phase: Phase = Phase.PENDING
    reason: str = ""
    message: str = ""

    @property
    def id(self) -> str:
        return str(self.revision.name).rsplit("/", 1)[-1]


@dataclass
class ServiceRecord:
    service: run_v2.Service
    name: ServiceName
    seq: int
    revisions: dict[str, RevisionRecord] = field(default_factory=dict)  # by revision id
    pending_ops: list[OperationRecord] = field(default_factory=list)
    awaiting: str = ""  # full name of the revision the ongoing reconciliation must see ready
    urls: dict[str, str] = field(default_factory=dict)  # "" -> service URL, tag -> tag URL
    tag_seq: dict[str, int] = field(default_factory=dict)  # serving tag -> when it first served (age order)


@dataclass(frozen=True)
class StateView:
    """A consistent snapshot of everything the emulator holds, keyed by full resource name."""

    services: dict[str, run_v2.Service]
    revisions: dict[str, run_v2.Revision]
    policies: dict[str, policy_pb2.Policy]
    operations: dict[str, operations_pb2.Operation]
