"""Convergence through `tfms apply`, divided by the floor: a bare script making the same calls.

Both run as fresh processes against a fresh emulator each, back to back, so the ratio holds
on a machine whose absolute speed drifts. Both times are wall clock from process start to
exit, imports included (a user waits for those too); `work` excludes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import READS, REPO, WRITES, EmulatorProcess, child_env, log, rendered_bodies, write_manifests

# `tfms apply` works on 16 services at a time; the floor script does the same. Unbounded, 1,000
# concurrent calls queue in the emulator past the client's own deadlines (504s).
APPLY_CONCURRENCY = 16


def _run(argv: list[str], workdir: Path, name: str, timeout: float) -> float:
    """Wall seconds of one child process; its output goes to NAME.log."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as out:
        began = time.monotonic()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=child_env(), cwd=REPO, timeout=timeout, check=False)
        wall = time.monotonic() - began
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{name} exited {proc.returncode}:\n{tail}")
    return wall


def _summary(counts: Counter[str], size: int) -> dict[str, Any]:
    return {"writes": sum(counts[m] for m in WRITES), "reads": sum(counts[m] for m in READS),
            "calls_per_service": sum(counts.values()) / size, "calls": dict(counts)}


def run_size(size: int, workdir: Path, interval: float = 1.0) -> dict[str, Any]:
    """Floor, then `tfms apply`, for `size` services from nothing to all Ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    manifests = write_manifests(workdir / "manifests", size)
    bodies = workdir / "bodies.json"
    bodies.write_text(json.dumps(rendered_bodies(size)))
    timeout = 300 + size
    out: dict[str, Any] = {"size": size}
    with EmulatorProcess(workdir / "emu-floor").start() as emulator:
        log(f"convergence: floor script, {size} services")
        wall = _run([sys.executable, "-m", "bench.floor", str(bodies), emulator.address, "--interval", str(interval),
                     "--concurrency", str(APPLY_CONCURRENCY), "--out", str(workdir / "floor.json")],
                    workdir, "floor", timeout)
        out["floor"] = {"wall_s": wall, **json.loads((workdir / "floor.json").read_text()),
                        **_summary(emulator.call_counts(), size)}
    with EmulatorProcess(workdir / "emu-apply").start() as emulator:
        log(f"convergence: tfms apply, {size} services")
        wall = _run([sys.executable, "-m", "bench.timed", str(workdir / "apply.json"), "apply", "-f", str(manifests),
                     "--endpoint", emulator.address], workdir, "apply", timeout)
        out["apply"] = {"wall_s": wall, **json.loads((workdir / "apply.json").read_text()),
                        **_summary(emulator.call_counts(), size)}
    out["ratio"] = out["apply"]["wall_s"] / out["floor"]["wall_s"]
    out["work_ratio"] = out["apply"]["work_s"] / out["floor"]["work_s"]
    return out
