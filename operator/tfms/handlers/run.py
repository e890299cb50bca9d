"""`tfms operator`: run the kopf operator (cluster-wide or for given namespaces)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import kopf

from tfms.handlers import operator as _handlers  # registers the handlers
from tfms.handlers.config import OperatorConfig


def run(*, namespaces: Sequence[str] = (), standalone: bool = False, peering: str | None = None,
        liveness: str | None = None, config: OperatorConfig | None = None,
        stop_flag: threading.Event | None = None, ready_flag: threading.Event | None = None) -> None:
    """Blocks until stopped (a signal, or `stop_flag` when run in a thread by tests)."""
    memo = kopf.Memo(config=config or OperatorConfig.from_env())
    asyncio.run(kopf.operator(
        clusterwide=not namespaces, namespaces=list(namespaces), standalone=standalone,
        peering_name=peering, liveness_endpoint=liveness, memo=memo,
        stop_flag=stop_flag, ready_flag=ready_flag,
    ))
    assert _handlers  # imported for its registrations
