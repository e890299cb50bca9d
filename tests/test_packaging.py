"""The operator image pins exact versions, carries no tensorflow, and runs as non-root."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([0-9][A-Za-z0-9_.+-]*)$")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "requirements" / "operator.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line.strip())
        assert match, f"not an exact pin: {line!r}"
        pins[_canon(match.group(1))] = Version(match.group(2))
    return pins


def test_lock_pins_every_dependency_within_declared_bounds() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _lock()
    for spec in project["dependencies"]:
        req = Requirement(spec)
        assert _canon(req.name) in pins, f"{req.name} missing from requirements/operator.txt"
        assert pins[_canon(req.name)] in req.specifier, f"{req.name} pin outside {req.specifier}"


def test_operator_has_no_tensorflow_or_kubernetes_client() -> None:
    pins = _lock()
    assert not [n for n in pins if n.startswith("tensorflow") or n == "kubernetes"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if "tensorflow" in d]
    extras = project["optional-dependencies"]
    assert all("tensorflow-cpu" in " ".join(v) for k, v in extras.items() if k in ("local", "dev"))
    assert not [d for v in extras.values() for d in v if Requirement(d).name == "tensorflow"]


def test_dockerfile_installs_the_lock_and_drops_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "requirements/operator.txt" in text and "--no-deps" in text
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M)
    assert re.search(r"^FROM\s+\S+:\d+\.\d+\.\d+", text, re.M), "base image must be pinned"
