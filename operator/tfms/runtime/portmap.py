"""`TFMS_RUNTIME_PORT_MAP`: where a "container" port really listens.

The local emulator runs many revisions on one host, each told `--rest_api_port=8080`
as on Cloud Run. It passes e.g. `8080:41234,8500:0` (container port -> host port,
0 = do not bind) so every process can keep its container-facing flags unchanged.
"""

from __future__ import annotations

import os

PORT_MAP_ENV = "TFMS_RUNTIME_PORT_MAP"
HOST_ENV = "TFMS_RUNTIME_HOST"
DEFAULT_HOST = "127.0.0.1"


def parse_port_map(text: str) -> dict[int, int]:
    """Parse `C:H[,C:H...]`; whitespace and empty items are ignored."""
    mapping: dict[int, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        container, sep, host = item.partition(":")
        try:
            c, h = int(container), int(host)
        except ValueError:
            raise ValueError(f"{PORT_MAP_ENV}: bad entry {item!r} (want CONTAINER_PORT:HOST_PORT)") from None
        if not sep or not 0 < c < 65536 or not 0 <= h < 65536:
            raise ValueError(f"{PORT_MAP_ENV}: bad entry {item!r} (want CONTAINER_PORT:HOST_PORT)")
        mapping[c] = h
    return mapping


def host_port(container_port: int, mapping: dict[int, int]) -> int | None:
    """The host port to bind for a container port, or None to not bind at all."""
    port = mapping.get(container_port, container_port)
    return port if port > 0 else None


def from_env(environ: dict[str, str] | None = None) -> tuple[str, dict[int, int]]:
    env = os.environ if environ is None else environ
    return env.get(HOST_ENV) or DEFAULT_HOST, parse_port_map(env.get(PORT_MAP_ENV, ""))
