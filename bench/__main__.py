"""`python -m bench`: every issue-9 figure, measured side by side in one run, as one table.

    python -m bench                      # sizes 100 and 1,000 (a few minutes on 2 cores)
    python -m bench --sizes 100,1000,10000 --operator-sizes 100,1000
    python -m bench --quick              # smoke sizes: 5 services, 300 runtime requests

Each figure is a ratio to a floor measured in the same run (absolute times drift on shared
machines): `tfms apply` and the operator against a bare script making the same Cloud Run
calls, the runtime against the same model called in-process. Progress goes to stderr, the
table to stdout, every raw number to `--json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import convergence, kube, runtime
from bench.common import PROJECT_QUOTA, log

TARGETS = {"apply": 1.2, "operator": 1.5, "rss_mib": 120.0, "first_s": 2.0, "runtime_ratio_c8": 0.45,
           "runtime_p99_c8_ms": 15.0, "router_added_ms": 0.3}


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes: {text!r}") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def _ok(passed: bool | None) -> str:
    return "" if passed is None else ("ok" if passed else "MISSED")


def rows(results: dict[str, Any]) -> list[list[str]]:
    """The table: figure, measured, side-by-side reference, target, verdict."""
    out: list[list[str]] = []
    for size, c in results.get("convergence", {}).items():
        out.append([f"converge {size} via tfms apply (s, wall)", f"{c['apply']['wall_s']:.2f}",
                    f"floor {c['floor']['wall_s']:.2f} -> {c['ratio']:.2f}x (work only {c['work_ratio']:.2f}x)",
                    f"<= {TARGETS['apply']}x", _ok(c["ratio"] <= TARGETS["apply"])])
    for size, o in results.get("operator", {}).items():
        out.append([f"converge {size} via operator (s)", f"{o['converge_s']:.2f}",
                    f"floor {o['floor_s']:.2f} -> {o['ratio']:.2f}x (creating objects {o['create_objects_s']:.2f}s)",
                    f"<= {TARGETS['operator']}x", _ok(o["ratio"] <= TARGETS["operator"])])
    for size, o in results.get("operator", {}).items():
        snap, each = o["snapshot"], o["no_snapshot"]
        for phase, label in (("resync", "timer resync"), ("resume", "restart (resume pass)")):
            s, e = snap[phase], each[phase]
            lists = s["calls"].get("ListServices", 0)
            out.append([f"{label} of {size} converged: writes", str(s["writes"]),
                        f"without snapshot {e['writes']}", "0", _ok(s["writes"] == 0 and e["writes"] == 0)])
            out.append([f"{label} of {size} converged: reads/service", f"{s['reads_per_service']:.3f}",
                        f"{lists} List page(s); one Get each: {e['reads_per_service']:.3f}",
                        "1 List/project-region", _ok(s["reads"] < e["reads"] or size < 2)])
        out.append([f"operator RSS with {size} objects (MiB)", f"{snap['rss_mib']:.1f}",
                    f"peak {snap['peak_rss_mib']:.1f}; converging peak {o['converge_peak_rss_mib']:.1f}",
                    f"<= {TARGETS['rss_mib']:.0f}", _ok(snap["rss_mib"] <= TARGETS["rss_mib"])])
        out.append([f"operator start -> first reconcile, {size} objects (s)", f"{snap['start_to_first_call_s']:.2f}",
                    f"spawn to first Cloud Run call; its imports alone {o['import_s']:.2f}", f"<= {TARGETS['first_s']}",
                    _ok(snap["start_to_first_call_s"] <= TARGETS["first_s"])])
        tf = snap["tensorflow_modules"] or snap["tensorflow_libs"]
        out.append([f"operator imports tensorflow ({size} objects)", "yes" if tf else "no",
                    f"{len(snap['tensorflow_modules'])} tensorflow modules of {snap['modules']}; "
                    f"{len(snap['tensorflow_libs'])} libtensorflow mappings", "no", _ok(not tf)])
    rt = results.get("runtime")
    if rt:
        inproc = rt["inproc"]
        for key in ("c1", "c8", "c32"):
            r = rt[key]
            target, passed = "", None
            if key == "c8":
                target = f">= {TARGETS['runtime_ratio_c8']}x, p99 <= {TARGETS['runtime_p99_c8_ms']:.0f} ms"
                passed = r["ratio"] >= TARGETS["runtime_ratio_c8"] and r["p99_ms"] <= TARGETS["runtime_p99_c8_ms"]
            out.append([f"runtime predict, {r['clients']} clients (req/s)", f"{r['rps']:.0f}",
                        f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; in-process {inproc['rps']:.0f}/s "
                        f"-> {r['ratio']:.2f}x", target, _ok(passed)])
        router = rt["router"]
        out.append(["router added latency, p50 (ms)", f"{router['added_p50_ms']:.3f}",
                    f"direct {router['direct_p50_ms']:.3f} vs routed {router['router_p50_ms']:.3f} (50/50 split)",
                    f"<= {TARGETS['router_added_ms']}", _ok(router["added_p50_ms"] <= TARGETS["router_added_ms"])])
    return out


def table(results: dict[str, Any]) -> str:
    header = ["figure", "measured", "side by side", "target", ""]
    body = rows(results)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default=[100, 1000],
                        help=f"services for convergence (default 100,1000; 10000 works: services fill "
                        f"projects {PROJECT_QUOTA} at a time, Cloud Run's per project+region quota)")
    parser.add_argument("--operator-sizes", type=_sizes, default=None,
                        help="sizes for the operator benchmarks (default: --sizes)")
    parser.add_argument("--requests", type=int, default=20000, help="runtime requests per concurrency level")
    parser.add_argument("--resync", type=float, default=15.0, help="the operator's resync interval while measured")
    parser.add_argument("--quick", action="store_true", help="smoke sizes: 5 services, 300 runtime requests")
    parser.add_argument("--only", default="convergence,operator,runtime",
                        help="comma-separated sections to run (convergence, operator, runtime)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and raw data here")
    parser.add_argument("--json", type=Path, default=None, help="also write every raw number here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.requests, args.resync = [5], 300, 6.0  # resync > the 5 s snapshot TTL
    operator_sizes = args.operator_sizes or args.sizes
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tfms-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"working in {workdir}")
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform()},
                               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "sizes": args.sizes}
    floors: dict[int, float] = {}
    if "convergence" in sections or "operator" in sections:
        results["convergence"] = {}
        for size in sorted(set(args.sizes) | (set(operator_sizes) if "operator" in sections else set())):
            c = convergence.run_size(size, workdir / f"converge-{size}")
            floors[size] = c["floor"]["work_s"]
            if size in args.sizes and "convergence" in sections:
                results["convergence"][size] = c
    if "operator" in sections:
        results["operator"] = kube.run(operator_sizes, workdir, floors, resync=args.resync)
    if "runtime" in sections:
        results["runtime"] = runtime.run(workdir / "runtime", args.requests)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(table(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
