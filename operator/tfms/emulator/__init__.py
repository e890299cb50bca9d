"""A local Cloud Run Admin API v2 (gRPC and REST) that the unmodified google-cloud-run client talks to.

It follows Cloud Run's documented control-plane semantics (revisions, traffic, the
reconciliation contract, etags, IAM), lets tests inject faults through `Emulator.control`
(or `/_emulator/...` over HTTP) and keeps its state in a file when asked.

Names are imported on first use, so `tfms.emulator.cli_options` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import EmulatorConfig
    from .control import Call, Control
    from .executor import ContainerSpec, Executor, RevisionEvents, RevisionLaunch
    from .server import Emulator, serve_forever
    from .simulated import SimulatedExecutor
    from .state import StateView

_EXPORTS = {
    "Call": ".control",
    "ContainerSpec": ".executor",
    "Control": ".control",
    "Emulator": ".server",
    "EmulatorConfig": ".config",
    "Executor": ".executor",
    "RevisionEvents": ".executor",
    "RevisionLaunch": ".executor",
    "SimulatedExecutor": ".simulated",
    "StateView": ".state",
    "serve_forever": ".server",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
