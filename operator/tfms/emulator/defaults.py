"""Server-side defaults Cloud Run writes into a stored template.

Real Cloud Run answers with defaulted fields the client never sent; clients that diff
desired against actual must cope with that, so the emulator does it too (documented
defaults only; `EmulatorConfig.server_defaults=False` turns it off). Defaulting is
idempotent, so re-sending either the original or the defaulted template is "unchanged".
"""

from __future__ import annotations

from google.cloud import run_v2

from .validation import parse_cpu

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_S = 300
DEFAULT_MAX_INSTANCES = 100
DEFAULT_CONCURRENCY = 80


def ingress_container(template: run_v2.RevisionTemplate) -> run_v2.Container:
    """The container that receives requests: the one with a port, else the first."""
    for c in template.containers:
        if c.ports:
            return c
    return template.containers[0]


def apply_template_defaults(template: run_v2.RevisionTemplate) -> None:
    """Fill documented defaults in place: port 8080/http1, timeout 300s, max 100, concurrency."""
    pb = run_v2.RevisionTemplate.pb(template)
    if not pb.HasField("timeout"):
        pb.timeout.seconds = DEFAULT_TIMEOUT_S
    if template.scaling.max_instance_count == 0:
        pb.scaling.max_instance_count = DEFAULT_MAX_INSTANCES
    if not pb.containers:
        return
    index = next((i for i, c in enumerate(pb.containers) if c.ports), 0)
    ingress = pb.containers[index]
    if pb.max_instance_request_concurrency == 0:
        cpu = parse_cpu(ingress.resources.limits.get("cpu", "1")) or 1.0
        pb.max_instance_request_concurrency = DEFAULT_CONCURRENCY if cpu >= 1 else 1
    if not ingress.ports:
        ingress.ports.add(name="http1", container_port=DEFAULT_PORT)
    for port in ingress.ports:
        if not port.name:
            port.name = "http1"
        if port.container_port == 0:
            port.container_port = DEFAULT_PORT
