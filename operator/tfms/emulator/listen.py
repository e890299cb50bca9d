"""Whether this machine can listen on a host: checked once, by name, before any server starts."""

from __future__ import annotations

import socket


def check_listenable(host: str, source: str, what: str) -> None:
    """ValueError naming `source` (a flag or variable) when nothing can listen on `host`: a
    non-address or a foreign one would otherwise fail deep inside gRPC or a revision launch."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ValueError(f"{source}={host!r}: {what} cannot listen there ({reason}); use an address of this "
                         "machine such as 127.0.0.1, ::1 or 0.0.0.0") from exc
