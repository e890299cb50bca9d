"""How pre-flight sees a model base path: a tiny read-only file-system interface.

Paths are strings as the spec writes them (`gs://bucket/models/m` or `/models/m`), joined
with `/`. Object stores have no directories, so a path that does not exist simply lists
as empty; errors such as a missing bucket or a denied permission are raised by the
reader itself (the storage backend raises `tfms.backends.errors` types) and pass through.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class FileInfo:
    """One file (object). `path` is relative to the directory that was listed or walked."""

    path: str
    size: int
    generation: str = ""  # Cloud Storage object generation; empty for local files


@dataclass(frozen=True)
class Listing:
    """The immediate children of a directory (prefix)."""

    dirs: tuple[str, ...] = ()
    files: tuple[FileInfo, ...] = ()

    def file(self, name: str) -> FileInfo | None:
        return next((f for f in self.files if f.path == name), None)


class ModelReader(Protocol):
    def list_dir(self, path: str) -> Listing:
        """Sub-directory names and files directly under `path`; empty if nothing is there."""
        ...

    def walk(self, path: str) -> list[FileInfo]:
        """Every file below `path`, with paths relative to it, sorted."""
        ...

    def read(self, path: str) -> bytes:
        """The whole content of one file."""
        ...


def join(base: str, *parts: str) -> str:
    """`gs://b/m` + `1` -> `gs://b/m/1`; trailing slashes of `base` are ignored."""
    out = base.rstrip("/") or "/"
    for part in parts:
        out = posixpath.join(out, part.strip("/"))
    return out


@dataclass
class MemoryReader:
    """A reader over an in-memory tree {relative path: bytes} rooted at `root` (tests, fixtures)."""

    files: Mapping[str, bytes]
    root: str = "mem://model"
    generations: Mapping[str, str] = field(default_factory=dict)

    def _rel(self, path: str) -> str:
        root = self.root.rstrip("/")
        path = path.rstrip("/")
        if path == root:
            return ""
        if not path.startswith(root + "/"):
            return "\0"  # outside the tree: nothing there
        return path[len(root) + 1:]

    def list_dir(self, path: str) -> Listing:
        rel = self._rel(path)
        prefix = f"{rel}/" if rel else ""
        dirs: set[str] = set()
        files: list[FileInfo] = []
        for name, data in self.files.items():
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            head, sep, _ = rest.partition("/")
            if sep:
                dirs.add(head)
            else:
                files.append(FileInfo(rest, len(data), self.generations.get(name, "")))
        return Listing(tuple(sorted(dirs)), tuple(sorted(files, key=lambda f: f.path)))

    def walk(self, path: str) -> list[FileInfo]:
        rel = self._rel(path)
        prefix = f"{rel}/" if rel else ""
        return sorted((FileInfo(n[len(prefix):], len(d), self.generations.get(n, ""))
                       for n, d in self.files.items() if n.startswith(prefix)), key=lambda f: f.path)

    def read(self, path: str) -> bytes:
        rel = self._rel(path)
        if rel not in self.files:
            raise FileNotFoundError(path)
        return bytes(self.files[rel])
