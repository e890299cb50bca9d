"""Cloud Run's documented limits (shared/reference/cloud-run-v2.md), as data.

Kept apart from the rules that use them so a changed limit is a one-line edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

MiB: Final = 2**20
GiB: Final = 2**30

# Whole vCPU values Cloud Run accepts, with (min, max) memory; fractional CPUs are 0.08..<1.
WHOLE_CPU_MEMORY: Final[dict[Decimal, tuple[int, int]]] = {
    Decimal(1): (128 * MiB, 4 * GiB),
    Decimal(2): (128 * MiB, 8 * GiB),
    Decimal(4): (2 * GiB, 16 * GiB),
    Decimal(6): (4 * GiB, 24 * GiB),
    Decimal(8): (4 * GiB, 32 * GiB),
}
FRACTIONAL_CPU_MIN: Final = Decimal("0.08")
MEMORY_MIN: Final = 128 * MiB


def fractional_memory_max(cpu: Decimal) -> int:
    """Below 1 vCPU: up to 512 MiB under 0.5 vCPU, up to 1 GiB from 0.5 vCPU."""
    return 1 * GiB if cpu >= Decimal("0.5") else 512 * MiB


@dataclass(frozen=True)
class GpuKind:
    min_cpu: Decimal
    min_memory: int
    regions: frozenset[str]
    verified: bool  # False: sizing inferred from an error message, see the reference


GPU_KINDS: Final[dict[str, GpuKind]] = {
    "nvidia-l4": GpuKind(
        Decimal(4), 16 * GiB,
        frozenset({"us-central1", "europe-west1", "europe-west4", "asia-southeast1", "asia-south1", "us-east4"}),
        verified=True,
    ),
    "nvidia-rtx-pro-6000": GpuKind(
        Decimal(20), 80 * GiB,
        frozenset({"us-central1", "europe-west1", "europe-west4", "asia-southeast1", "us-east4"}),
        verified=False,
    ),
}
# Extra whole-CPU sizes only a GPU instance can have (RTX PRO 6000, inferred).
GPU_ONLY_CPU_MEMORY: Final[dict[Decimal, tuple[int, int]]] = {Decimal(20): (80 * GiB, 80 * GiB)}

PROBE_STARTUP_MAX_SECONDS: Final = 240  # initialDelaySeconds and periodSeconds of a startup probe
# A tag URL is https://TAG---SERVICE-HASH-REGIONCODE.a.run.app and its first host label must
# fit 63 characters. The hash is 10 characters and region codes seen in URLs are 2 letters;
# the reference marks the exact budget unverified, so this errs on the long side.
TAG_HOST_HASH_LEN: Final = 10
REGION_CODE_LEN: Final = 2


def tag_host_label_length(tag: str, service: str) -> int:
    return len(tag) + len("---") + len(service) + 1 + TAG_HOST_HASH_LEN + 1 + REGION_CODE_LEN
