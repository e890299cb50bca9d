"""Version directories the way TF Serving's file-system storage path source reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ATOI = re.compile(r"\s*([+-]?\d+)\s*")
INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """`absl::SimpleAtoi` into int64: `00000123` is 123; anything else is not a version."""
    m = _ATOI.fullmatch(name)
    if m is None:
        return None
    value = int(m.group(1))
    return value if -INT64_MAX - 1 <= value <= INT64_MAX else None


@dataclass(frozen=True)
class VersionDirs:
    """Numeric sub-directories of a base path, and everything TF Serving would skip."""

    versions: dict[int, str]  # version -> directory name (the first spelling in sorted order)
    duplicates: dict[int, tuple[str, ...]]  # versions spelled more than once (`1/` and `001/`)
    ignored: tuple[str, ...]  # non-numeric directory names
    negative: tuple[str, ...]  # numeric but below 0: never served

    @property
    def latest(self) -> int | None:
        return max(self.versions) if self.versions else None


def version_dirs(names: list[str] | tuple[str, ...]) -> VersionDirs:
    versions: dict[int, str] = {}
    spellings: dict[int, list[str]] = {}
    ignored: list[str] = []
    negative: list[str] = []
    for name in sorted(names):
        version = parse_version(name)
        if version is None:
            ignored.append(name)
        elif version < 0:
            negative.append(name)
        else:
            versions.setdefault(version, name)
            spellings.setdefault(version, []).append(name)
    duplicates = {v: tuple(n) for v, n in spellings.items() if len(n) > 1}
    return VersionDirs(versions, duplicates, tuple(ignored), tuple(negative))
