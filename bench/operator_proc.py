"""`tfms operator ...` exactly as the console script runs it, plus a probe for the benchmark.

    python -m bench.operator_proc PROBE.json operator --standalone -n bench

On SIGUSR1 it writes what only the process itself can tell into PROBE.json: whether any
`tensorflow` module is in `sys.modules` (DESIGN.md: the operator never imports it), and how
many modules are loaded. The handler only writes that file; it never touches kopf.
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType


def _probe(path: str) -> None:
    def dump(signum: int, frame: FrameType | None) -> None:
        names = list(sys.modules)
        tf = sorted(n for n in names if n == "tensorflow" or n.startswith(("tensorflow.", "tf_keras", "keras")))
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"tensorflow_modules": tf[:20], "modules": len(names)}, f)

    signal.signal(signal.SIGUSR1, dump)


if __name__ == "__main__":
    _probe(sys.argv[1])
    from tfms.cli.main import main

    sys.exit(main(sys.argv[2:]))
