"""A local Cloud Run Admin API v2 (gRPC) that the unmodified google-cloud-run client talks to.

It follows Cloud Run's documented control-plane semantics (revisions, traffic, the
reconciliation contract, etags, IAM) and lets tests inject faults through `Emulator.control`.
"""

from .config import EmulatorConfig
from .control import Call, Control
from .executor import ContainerSpec, Executor, RevisionEvents, RevisionLaunch
from .server import Emulator, serve_forever
from .simulated import SimulatedExecutor
from .state import StateView

__all__ = [
    "Call",
    "ContainerSpec",
    "Control",
    "Emulator",
    "EmulatorConfig",
    "Executor",
    "RevisionEvents",
    "RevisionLaunch",
    "SimulatedExecutor",
    "StateView",
    "serve_forever",
]
