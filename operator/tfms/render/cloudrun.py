"""Spec -> Cloud Run Admin API v2 `Service`, in its canonical proto3 JSON form.

Pure: the same spec always renders the same document, which makes revision names content
hashes and golden files exact. The backend turns the document into a `run_v2.Service`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfms.api import names
from tfms.api.model import TFModelService, TrafficTarget
from tfms.render.tfserving import serving_command

INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    "none": "INGRESS_TRAFFIC_NONE",
}
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
CONTAINER_NAME = "tfserving"


@dataclass(frozen=True)
class RenderedService:
    """The desired Cloud Run service plus the names derived from it."""

    name: str  # projects/P/locations/L/services/S
    parent: str  # projects/P/locations/L
    service_id: str
    revision: str  # the content-derived revision name of `body["template"]`
    body: dict[str, Any]


def ownership_labels(svc: TFModelService) -> dict[str, str]:
    return {
        names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
        names.LABEL_NAMESPACE: _label_value(svc.namespace),
        names.LABEL_NAME: _label_value(svc.name),
    }


def _label_value(text: str) -> str:
    """GCP label values allow lowercase letters, digits, '_' and '-', up to 63 characters."""
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in text.lower())
    return cleaned[:63]


def render_traffic(targets: tuple[TrafficTarget, ...]) -> list[dict[str, Any]]:
    """Always explicit: an empty spec list becomes 100% to latest, so a split left by an
    earlier deploy (Cloud Run keeps it) never outlives the spec that asked for it."""
    if not targets:
        return [{"type": LATEST, "percent": 100}]
    out: list[dict[str, Any]] = []
    for target in targets:
        item: dict[str, Any] = {"type": LATEST if target.latest else REVISION, "percent": target.percent}
        if target.revision:
            item["revision"] = target.revision
        if target.tag:
            item["tag"] = target.tag
        out.append(item)
    return out


def render_template(svc: TFModelService) -> dict[str, Any]:
    serving = serving_command(svc)
    env = [{"name": k, "value": v} for k, v in serving.env]
    env += [{"name": e.name, "value": e.value} for e in svc.runtime.env]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": svc.runtime.image,
        "command": list(serving.command),
        "args": list(serving.args),
        "ports": [{"name": "http1", "containerPort": names.CONTAINER_PORT}],
        "resources": {
            "limits": {"cpu": svc.runtime.cpu, "memory": svc.runtime.memory},
            # Explicit, or setting resources would drop Cloud Run's default billing mode.
            "cpuIdle": True,
        },
    }
    if env:
        container["env"] = env
    template: dict[str, Any] = {
        "labels": {
            names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
            names.LABEL_MODEL: _label_value(svc.model.name),
        },
        "scaling": {
            "minInstanceCount": svc.scaling.min_instances,
            "maxInstanceCount": svc.scaling.max_instances,
        },
        "timeout": f"{svc.scaling.timeout_seconds}s",
        "maxInstanceRequestConcurrency": svc.scaling.concurrency,
        "containers": [container],
    }
    if svc.service_account:
        template["serviceAccount"] = svc.service_account
    return template


def render_service(svc: TFModelService) -> RenderedService:
    template = render_template(svc)
    revision = names.revision_name(svc.name, template)
    body: dict[str, Any] = {
        "labels": ownership_labels(svc),
        "ingress": INGRESS[svc.ingress],
        "template": {"revision": revision, **template},
        "traffic": render_traffic(svc.traffic),
    }
    return RenderedService(
        name=names.service_name(svc.project, svc.region, svc.name),
        parent=names.location_name(svc.project, svc.region),
        service_id=svc.name,
        revision=revision,
        body=body,
    )
