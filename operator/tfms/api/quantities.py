"""Kubernetes-style quantities for CPU and memory, as Cloud Run accepts them."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

_CPU_RE: Final = re.compile(r"^(\d+(\.\d+)?)(m?)$")
_MEM_RE: Final = re.compile(r"^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEM_UNITS: Final = {
    None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}


def parse_cpu(text: str) -> Decimal | None:
    """vCPUs as a Decimal ("1000m" -> 1), or None when the text is not a CPU quantity."""
    match = _CPU_RE.match(text.strip())
    if not match:
        return None
    try:
        value = Decimal(match.group(1))
    except InvalidOperation:
        return None
    return value / 1000 if match.group(3) else value


def parse_memory(text: str) -> int | None:
    """Bytes, or None when the text is not a memory quantity."""
    match = _MEM_RE.match(text.strip())
    if not match:
        return None
    return int(Decimal(match.group(1)) * _MEM_UNITS[match.group(3)])
