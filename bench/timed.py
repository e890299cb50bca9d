"""Run the `tfms` CLI exactly as its console script does, and record where the time went.

    python -m bench.timed OUT.json apply -f DIR --endpoint HOST:PORT

Writes {"import_s", "work_s", "total_s", "exit"} to OUT.json: the imports `tfms apply`
needs (the CLI and the Cloud Run client), then `tfms.cli.main.main(argv)` itself.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

from tfms.cli import apply as _apply  # noqa: E402,F401 - imported lazily by `tfms apply`; counted as import
from tfms.cli.main import main  # noqa: E402

IMPORTED = time.perf_counter()

if __name__ == "__main__":
    out, argv = sys.argv[1], sys.argv[2:]
    code = main(argv)
    done = time.perf_counter()
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"import_s": IMPORTED - STARTED, "work_s": done - IMPORTED, "total_s": done - STARTED,
                   "exit": code}, f)
    sys.exit(code)
