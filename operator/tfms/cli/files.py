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


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: YAML's last-wins would silently
    drop the first value (e.g. two `region:` lines), and the spec would not be what was read."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


MAX_YAML_NODES = 100_000  # nodes in one document with every alias expanded (a billion-laughs bomb has 10^9)


class ManifestLoader(UniqueKeyLoader):
    """Also refuses alias bombs and recursive aliases before anything is built: the document's size is
    counted with each alias expanded (linear in the file, memoised per node), so a small file that
    would expand into billions of values is an error in milliseconds, not a minute of validation."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)  # type: ignore[no-untyped-call]


def _check_expansion(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the document expands to more than {MAX_YAML_NODES} values "
                    "(aliases counted each time they are used): refused as a YAML alias bomb", node.start_mark)
            continue
        if id(node) in sizes:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise yaml.constructor.ConstructorError(
                    None, None, "an alias refers to a node that contains it (a recursive document)",
                    child.start_mark)
            if id(child) not in sizes:
                stack.append((child, False))


class LoneSurrogate(Exception):
    """A string with half of a UTF-16 surrogate pair: not text, so no API or file can carry it."""


def _unicode(value: Any, where: str = "") -> Any:
    """Strings as the author meant them. JSON writes a character beyond U+FFFF as a surrogate pair
    ("\\ud83d\\ude00") and PyYAML keeps the two halves as two code points, which nothing can
    encode; join each pair, and refuse a lone half, naming its field."""
    if isinstance(value, str):
        if not any("\ud800" <= c <= "\udfff" for c in value):
            return value
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise LoneSurrogate(f"{where or 'a key'}: a lone UTF-16 surrogate escape (half of a pair) is "
                                "not valid text") from None
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key = _unicode(key, where)
            out[key] = _unicode(item, f"{where}.{key}" if where else str(key))
        return out
    if isinstance(value, list):
        return [_unicode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """One line naming the file, line and column; PyYAML's own text says `<unicode string>`."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        return f"{path}, line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"{path}: {' '.join(str(exc).split())}"


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


def _read(path: Path) -> str:
    """At most MAX_FILE_BYTES, counted while reading: a device or pipe reports size 0, and
    `tfms validate /dev/zero` must not read forever."""
    with path.open("rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return raw.decode("utf-8")


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
                docs = [_unicode(d) for d in yaml.load_all(_read(path), Loader=ManifestLoader)]
            except yaml.YAMLError as exc:
                raise ManifestError(yaml_error(path, exc)) from exc
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"{path}: {exc}") from exc
            except RecursionError:
                raise ManifestError(f"{path}: nested too deeply to be a manifest") from None
            except LoneSurrogate as exc:
                raise ManifestError(f"{path}: {exc}") from None
            except ValueError as exc:  # a scalar PyYAML cannot build: a 5000-digit int, a 13th month
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
