"""`tfms operator`: run the kopf operator (cluster-wide or for given namespaces)."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Mapping, Sequence

import kopf

from tfms.handlers import operator as _handlers  # registers the handlers
from tfms.handlers.config import OperatorConfig

PRIORITY_ENV = "TFMS_PEERING_PRIORITY"


def peering_priority(env: Mapping[str, str] | None = None) -> int:
    """This replica's kopf peering priority: TFMS_PEERING_PRIORITY, else a random one.

    kopf pauses *every* operator that sees a live peer of the same priority, so replicas that all
    kept kopf's default (0) would all stand still. Distinct priorities make exactly one active; the
    others take over once its keep-alive expires."""
    raw = (os.environ if env is None else env).get(PRIORITY_ENV, "")
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(f"error: {PRIORITY_ENV} must be an integer, got {raw!r}") from None
    return random.SystemRandom().randrange(1, 2**31)


def run(*, namespaces: Sequence[str] = (), standalone: bool = False, peering: str | None = None,
        liveness: str | None = None, config: OperatorConfig | None = None,
        stop_flag: threading.Event | None = None, ready_flag: threading.Event | None = None) -> None:
    """Blocks until stopped (a signal, or `stop_flag` when run in a thread by tests)."""
    memo = kopf.Memo(config=config or OperatorConfig.from_env())
    asyncio.run(kopf.operator(
        clusterwide=not namespaces, namespaces=list(namespaces), standalone=standalone,
        peering_name=peering, priority=peering_priority() if peering else None,
        liveness_endpoint=liveness, memo=memo,
        stop_flag=stop_flag, ready_flag=ready_flag,
    ))
    assert _handlers  # imported for its registrations
