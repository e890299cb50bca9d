"""Reading TFModelService manifests from files and directories, as kubectl -f does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tfms.api import names

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 4 * 1024 * 1024


class ManifestError(Exception):
    """A file that cannot be read or parsed; names the file."""


@dataclass(frozen=True)
class Manifest:
    source: str  # "path#index" for messages
    obj: dict[str, Any]


def _files(target: Path) -> Iterator[Path]:
    if target.is_dir():
        yield from sorted(p for p in target.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    elif target.exists():
        yield target
    else:
        raise ManifestError(f"{target}: no such file or directory")


def _resolve_local_paths(obj: dict[str, Any], base: Path) -> None:
    """A relative model basePath means 'next to this file' (for `tfms up`); make it absolute."""
    model = (obj.get("spec") or {}).get("model") if isinstance(obj.get("spec"), dict) else None
    if isinstance(model, dict):
        path = model.get("basePath")
        if isinstance(path, str) and path and "://" not in path and not os.path.isabs(path):
            model["basePath"] = str((base / path).resolve())


def load(targets: list[str], kind: str = names.KIND) -> list[Manifest]:
    """Every TFModelService document in the given files/directories (non-recursive).

    Documents of other kinds are skipped, so a directory can also hold e.g. a kustomization.
    """
    out: list[Manifest] = []
    for target in targets:
        for path in _files(Path(target)):
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise ManifestError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
                docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise ManifestError(f"{path}: {exc}") from exc
            for index, doc in enumerate(docs):
                if doc is None:
                    continue
                source = f"{path}#{index}" if len(docs) > 1 else str(path)
                if not isinstance(doc, dict):
                    raise ManifestError(f"{source}: a manifest must be a mapping, got {type(doc).__name__}")
                api_version = str(doc.get("apiVersion", ""))
                if kind != names.KIND and doc.get("kind") != kind:
                    continue
                if doc.get("kind") != names.KIND and not api_version.startswith(names.GROUP + "/"):
                    continue
                if doc.get("kind") == names.POLICY_KIND and kind != names.POLICY_KIND:
                    continue  # guardrails beside the services they govern
                _resolve_local_paths(doc, path.parent)
                out.append(Manifest(source, doc))
    if not out:
        raise ManifestError(f"no {kind} found in {', '.join(targets)}")
    return out
