"""Finding version directories and applying a version policy, as TF Serving's
file-system storage path source does."""

from __future__ import annotations

import os
import re

from tfms.runtime.config import VersionPolicy

_ATOI = re.compile(r"\s*([+-]?\d+)\s*")
_INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """`absl::SimpleAtoi` into int64: surrounding spaces and leading zeros are fine,
    anything else (or an overflow) means "not a version directory"."""
    m = _ATOI.fullmatch(name)
    if m is None:
        return None
    value = int(m.group(1))
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return None
    return value


def list_versions(base_path: str) -> dict[int, str]:
    """Version number -> directory. Raises FileNotFoundError if base_path is missing.

    Two spellings of one number (`1` and `001`) resolve to the first in sorted order,
    which keeps the choice stable across polls.
    """
    found: dict[int, str] = {}
    for entry in sorted(os.listdir(base_path)):
        version = parse_version(entry)
        path = os.path.join(base_path, entry)
        if version is not None and version not in found and os.path.isdir(path):
            found[version] = path
    return found


def select_versions(available: list[int] | set[int] | dict[int, str], policy: VersionPolicy) -> list[int]:
    """The versions a policy aspires to, highest first."""
    versions = sorted(available, reverse=True)
    if policy.kind == "all":
        return versions
    if policy.kind == "specific":
        wanted = set(policy.versions)
        return [v for v in versions if v in wanted]
    return versions[: max(policy.num_versions, 1)]
