"""`tfms operator ...` exactly as the console script runs it, plus a probe for the benchmark.

    python -m bench.operator_proc PROBE.json operator --standalone -n bench

On SIGUSR1 it writes what only the process itself can tell into PROBE.json: whether any
`tensorflow` module is in `sys.modules` (DESIGN.md: the operator never imports it), and how
many modules are loaded. The handler only writes that file; it never touches kopf.

With `BENCH_TRACEMALLOC=FRAMES` in the environment (off by default: tracing costs memory and
CPU of its own; 0 reports without tracing) it also writes PROBE.json.memory.txt: the Python heap by file and by
traceback (tracemalloc), live objects by type, and glibc's view (`mallinfo2`) of the heap,
which tells Python's own allocations from allocator slack, so a per-object cost can be
attributed to kopf, to tfms or to the allocator.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import signal
import sys
import tracemalloc
from types import FrameType

TRACE_ENV = "BENCH_TRACEMALLOC"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo() -> dict[str, float]:
    """glibc heap totals in MiB: `arena` (main heap + arenas, mmapped), `hblkhd` (large mmaps),
    `uordblks` (in use), `fordblks` (free but held). Empty off glibc or before 2.33."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {name: getattr(info, name) / 2**20 for name in ("arena", "hblkhd", "uordblks", "fordblks")}


def _rss() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _memory_report(path: str) -> None:
    lines = [f"VmRSS {_rss():.1f} MiB; glibc {_mallinfo()}"]
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    lines.append(f"gc objects {sum(counts.values())}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common(40)))
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        traced, peak = tracemalloc.get_traced_memory()
        lines.append(f"tracemalloc traced {traced / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, "
                     f"own overhead {tracemalloc.get_tracemalloc_memory() / 2**20:.1f} MiB")
        lines.append("--- by file")
        lines += [str(s) for s in snapshot.statistics("filename")[:40]]
        lines.append("--- by line")
        lines += [str(s) for s in snapshot.statistics("lineno")[:60]]
        lines.append("--- by traceback")
        for stat in snapshot.statistics("traceback")[:40]:
            lines.append(f"{stat.size / 1024:.1f} KiB in {stat.count} blocks")
            lines += [f"    {line}" for line in stat.traceback.format(limit=12)]
    with open(path + ".memory.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n--- pymalloc (sys._debugmallocstats)\n")
        f.flush()
        saved = os.dup(2)  # it prints to the C-level stderr only
        try:
            sys.stderr.flush()
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _probe(path: str) -> None:
    def dump(signum: int, frame: FrameType | None) -> None:
        names = list(sys.modules)
        tf = sorted(n for n in names if n == "tensorflow" or n.startswith(("tensorflow.", "tf_keras", "keras")))
        if os.environ.get(TRACE_ENV):
            _memory_report(path)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"tensorflow_modules": tf[:20], "modules": len(names)}, f)

    signal.signal(signal.SIGUSR1, dump)


if __name__ == "__main__":
    if int(os.environ.get(TRACE_ENV) or 0) > 0:
        tracemalloc.start(int(os.environ[TRACE_ENV]))
    _probe(sys.argv[1])
    from tfms.cli.main import main

    sys.exit(main(sys.argv[2:]))
