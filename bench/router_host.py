"""The local router in its own process, splitting one service 50/50 over two revisions that
both point at BACKEND_PORT (a running runtime), as `tfms emulator --local` would.

    python -m bench.router_host BACKEND_PORT

Prints the service URL on its first line, then serves until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading

from tfms.emulator.local.router import Router

SERVICE = "projects/bench/locations/us-central1/services/router-bench"


def main(backend_port: int) -> None:
    router = Router()
    revisions = [f"{SERVICE}/revisions/router-bench-{x}" for x in ("a", "b")]
    for revision in revisions:
        router.set_backend(revision, revision.rsplit("/", 1)[-1], backend_port)
    router.set_routes(SERVICE, [(r, 50) for r in revisions], {})
    print(router.service_url(SERVICE), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    router.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
