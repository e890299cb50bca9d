"""The seam between the emulator's control plane and whatever runs revisions.

The control plane (Cloud Run API semantics) never knows whether a revision is a real
process or a simulation; it launches revisions, hears back when each one is ready or has
failed, and tells the executor where traffic goes. `SimulatedExecutor` (no processes) and
`tfms.emulator.local.LocalExecutor` (model servers plus a router) implement it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ContainerSpec:
    """The one ingress container of a revision, as Cloud Run would start it."""

    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # plain values only; secret refs are not resolved locally
    port: int = 8080  # the container port; Cloud Run sets PORT to it


@dataclass(frozen=True)
class RevisionLaunch:
    """Everything an executor needs to start one revision."""

    service: str  # projects/P/locations/L/services/S
    service_id: str  # S
    revision: str  # projects/P/locations/L/services/S/revisions/R
    revision_id: str  # R
    container: ContainerSpec
    startup_timeout_s: float = 240.0  # Cloud Run's default TCP startup probe window
    labels: tuple[tuple[str, str], ...] = field(default=())


class RevisionEvents(Protocol):
    """Called by an executor, from any thread, when a launched revision settles."""

    def revision_ready(self, revision: str) -> None: ...

    def revision_failed(self, revision: str, reason: str, message: str) -> None:
        """`reason` is a Cloud Run reason enum name, e.g. CONTAINER_MISSING or
        HEALTH_CHECK_CONTAINER_ERROR; `message` says why in words a user can act on."""
        ...


class Executor(Protocol):
    """Runs revisions and routes requests to them.

    Implementations must never call back into `RevisionEvents` synchronously from
    `launch`, `set_routes` or `stop_revision`: the control plane may hold its lock there.
    """

    def bind(self, events: RevisionEvents) -> None: ...

    def launch(self, launch: RevisionLaunch) -> None:
        """Start the revision without blocking; report the outcome through `events`."""
        ...

    def stop_revision(self, revision: str) -> None: ...

    def set_routes(
        self, service: str, service_id: str, split: list[tuple[str, int]], tags: dict[str, str]
    ) -> None:
        """`split` is (revision full name, percent) summing to 100; `tags` maps tag -> revision."""
        ...

    def service_url(self, service: str, service_id: str) -> str: ...

    def tag_url(self, service: str, service_id: str, tag: str) -> str: ...

    def delete_service(self, service: str) -> None: ...

    def close(self) -> None: ...
