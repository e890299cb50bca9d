"""Spec -> Cloud Run Admin API v2 `Service`, in its canonical proto3 JSON form.

Pure: the same spec always renders the same document, which makes revision names content
hashes and golden files exact. The backend turns the document into a `run_v2.Service`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfms.api import names
from tfms.api.model import Probe, TFModelService, TrafficTarget
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
GPU_LIMIT = "nvidia.com/gpu"


@dataclass(frozen=True)
class RenderedService:
    """The desired Cloud Run service plus the names derived from it."""

    name: str  # projects/P/locations/L/services/S
    parent: str  # projects/P/locations/L
    service_id: str
    revision: str  # the content-derived revision name of `body["template"]`
    body: dict[str, Any]


def ownership_labels(svc: TFModelService) -> dict[str, str]:
    labels = {
        names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
        names.LABEL_NAMESPACE: _label_value(svc.namespace),
        names.LABEL_NAME: _label_value(svc.name),
    }
    if svc.uid:
        labels[names.LABEL_UID] = _label_value(svc.uid)
    return labels


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


def _env(svc: TFModelService, extra: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in extra]
    for var in svc.runtime.env:
        if var.secret is not None:
            ref = {"secret": var.secret.secret, "version": var.secret.version}
            out.append({"name": var.name, "valueSource": {"secretKeyRef": ref}})
        else:
            out.append({"name": var.name, "value": var.value})
    return out


def _probe(svc: TFModelService, probe: Probe) -> dict[str, Any]:
    """HTTP GET on the model's status URL: TF Serving has no health endpoint, and this one
    answers only once the model is loaded."""
    return {
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
        "httpGet": {"path": f"/v1/models/{svc.model.name}", "port": names.CONTAINER_PORT},
    }


def render_container(svc: TFModelService) -> dict[str, Any]:
    serving = serving_command(svc)
    limits: dict[str, str] = {"cpu": svc.runtime.cpu, "memory": svc.runtime.memory}
    if svc.runtime.gpu is not None:
        limits[GPU_LIMIT] = "1"
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": svc.runtime.image,
        "command": list(serving.command),
        "args": list(serving.args),
        "ports": [{"name": "http1", "containerPort": names.CONTAINER_PORT}],
        "resources": {
            "limits": limits,
            # Explicit, or setting resources would drop Cloud Run's default billing mode.
            "cpuIdle": not svc.scaling.cpu_always_allocated,
            "startupCpuBoost": svc.scaling.startup_cpu_boost,
        },
    }
    env = _env(svc, serving.env)
    if env:
        container["env"] = env
    if svc.runtime.startup_probe is not None:
        container["startupProbe"] = _probe(svc, svc.runtime.startup_probe)
    if svc.runtime.liveness_probe is not None:
        container["livenessProbe"] = _probe(svc, svc.runtime.liveness_probe)
    return container


def render_template(svc: TFModelService) -> dict[str, Any]:
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
        "containers": [render_container(svc)],
    }
    if svc.service_account:
        template["serviceAccount"] = svc.service_account
    if svc.runtime.gpu is not None:
        template["nodeSelector"] = {"accelerator": svc.runtime.gpu.type}
        template["gpuZonalRedundancyDisabled"] = not svc.runtime.gpu.zonal_redundancy
    return template


def render_service(svc: TFModelService) -> RenderedService:
    template = render_template(svc)
    revision = names.revision_name(svc.name, template)
    body: dict[str, Any] = {
        "labels": {**dict(svc.labels), **ownership_labels(svc)},
        "ingress": INGRESS[svc.ingress],
        "template": {"revision": revision, **template},
        "traffic": render_traffic(svc.traffic),
    }
    if svc.annotations:
        body["annotations"] = dict(svc.annotations)
    # Never implied: invoker IAM stays on. `public: true` is an allUsers grant made by the IAM
    # step, which turns invoker IAM off only where the organisation forbids allUsers
    # (tfms.plan.iam.with_iam_state keeps that choice across full replaces).
    body["invokerIamDisabled"] = False
    return RenderedService(
        name=names.service_name(svc.project, svc.region, svc.name),
        parent=names.location_name(svc.project, svc.region),
        service_id=svc.name,
        revision=revision,
        body=body,
    )
