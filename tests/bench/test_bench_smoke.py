"""`python -m bench --quick` still runs and prints every issue-9 figure (CI's smoke size).

Benchmarks are not timed tests: this asserts that each figure is there and sane (a positive,
finite number; zero writes; no tensorflow in the operator), never how fast anything was.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

FIGURES = (
    "converge 5 via tfms apply", "converge 5 via operator",
    "timer resync of 5 converged: writes", "timer resync of 5 converged: reads/service",
    "restart (resume pass) of 5 converged: writes", "restart (resume pass) of 5 converged: reads/service",
    "operator RSS with 5 objects", "operator start -> first reconcile", "operator imports tensorflow",
    "runtime predict, 1 clients", "runtime predict, 8 clients", "runtime predict, 32 clients",
    "router added latency",
)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_quick_bench_prints_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--workdir", str(tmp_path / "work"),
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for figure in FIGURES:
        assert figure in proc.stdout, f"{figure!r} missing from:\n{proc.stdout}"
    results = json.loads(out.read_text())

    apply = results["convergence"]["5"]
    assert _positive(apply["ratio"]) and apply["apply"]["exit"] == 0
    assert apply["floor"]["calls"]["CreateService"] == apply["apply"]["calls"]["CreateService"] == 5

    op = results["operator"]["5"]
    assert _positive(op["converge_s"]) and _positive(op["ratio"])
    for mode in ("snapshot", "no_snapshot"):
        for phase in ("resume", "resync"):
            assert op[mode][phase]["writes"] == 0, op[mode][phase]
            assert op[mode][phase]["reads"] > 0
        assert op[mode]["objects_unchanged"]  # no status patches either
        assert op[mode]["tensorflow_modules"] == [] and op[mode]["tensorflow_libs"] == []
        assert _positive(op[mode]["rss_mib"]) and _positive(op[mode]["start_to_first_call_s"])
    # 6 objects (5 and a warm-up in its own project): one List per project instead of a Get each.
    assert op["no_snapshot"]["resync"]["calls"] == {"GetService": 6}
    assert op["snapshot"]["resync"]["reads"] < 6

    runtime = results["runtime"]
    for level in ("c1", "c8", "c32"):
        assert _positive(runtime[level]["rps"]) and _positive(runtime[level]["ratio"])
        assert 0 < runtime[level]["p50_ms"] <= runtime[level]["p99_ms"]
    assert _positive(runtime["inproc"]["rps"])
    assert math.isfinite(runtime["router"]["added_p50_ms"]) and _positive(runtime["router"]["router_p50_ms"])
