"""Spec -> the Knative-format Cloud Run v1 `Service` that `gcloud run services replace` accepts.

Same intent as the v2 render (`tfms.render.cloudrun`), in the v1 shape: `metadata.namespace`
is the project, the region is the `cloud.googleapis.com/location` label, and the Cloud Run
settings v2 has as fields become annotations, each at the level Cloud Run reads it from
(service metadata or revision template; the wrong level is rejected or ignored). The BYO
revision name is the v2 render's, so both APIs see the same revision for the same content.
"""

from __future__ import annotations

from typing import Any, Final

from tfms.api.model import TFModelService
from tfms.render.cloudrun import render_service
from tfms.render.knative import render_container, render_traffic, service_document

LOCATION_LABEL: Final = "cloud.googleapis.com/location"
ACCELERATOR: Final = "run.googleapis.com/accelerator"  # a nodeSelector key, not an annotation

# Service level (`metadata.annotations`).
INGRESS: Final = "run.googleapis.com/ingress"
INVOKER_IAM_DISABLED: Final = "run.googleapis.com/invoker-iam-disabled"
# Revision level (`spec.template.metadata.annotations`); Cloud Run v1 spells scale in camelCase.
MIN_SCALE: Final = "autoscaling.knative.dev/minScale"
MAX_SCALE: Final = "autoscaling.knative.dev/maxScale"
CPU_THROTTLING: Final = "run.googleapis.com/cpu-throttling"
STARTUP_CPU_BOOST: Final = "run.googleapis.com/startup-cpu-boost"
GPU_ZONAL_REDUNDANCY_DISABLED: Final = "run.googleapis.com/gpu-zonal-redundancy-disabled"
SECRETS: Final = "run.googleapis.com/secrets"  # ALIAS:projects/P/secrets/NAME,... for other projects' secrets

SERVICE_ANNOTATIONS: Final = frozenset({INGRESS, INVOKER_IAM_DISABLED})
REVISION_ANNOTATIONS: Final = frozenset({MIN_SCALE, MAX_SCALE, CPU_THROTTLING, STARTUP_CPU_BOOST,
                                         GPU_ZONAL_REDUNDANCY_DISABLED, SECRETS})

# v1 ingress values, keyed by the spec's (equal today; the table fails loudly on a new value).
INGRESS_VALUES: Final = {
    "all": "all",
    "internal": "internal",
    "internal-and-cloud-load-balancing": "internal-and-cloud-load-balancing",
    "none": "none",
}


def _flag(value: bool) -> str:
    """Annotation values are strings; Cloud Run reads booleans as "true"/"false"."""
    return "true" if value else "false"


def secret_aliases(svc: TFModelService) -> dict[str, str]:
    """Alias of each secret given as `projects/P/secrets/NAME` (v2 takes the path itself).

    v1 refers to such a secret by an alias in `secretKeyRef.name` and maps aliases to paths
    in the revision annotation `run.googleapis.com/secrets`. The alias is NAME, numbered
    when it would clash with another secret's name, so refs stay readable and unambiguous.
    """
    refs = [var.secret.secret for var in svc.runtime.env if var.secret is not None]
    used = {ref for ref in refs if "/" not in ref}
    aliases: dict[str, str] = {}
    for path in refs:
        if "/" not in path or path in aliases:
            continue
        base = alias = path.rsplit("/", 1)[-1]
        n = 1
        while alias in used:
            n += 1
            alias = f"{base}-{n}"
        aliases[path] = alias
        used.add(alias)
    return aliases


def render_gcloud(svc: TFModelService) -> dict[str, Any]:
    rendered = render_service(svc)
    annotations = {INGRESS: INGRESS_VALUES[svc.ingress]}
    if svc.access.public:
        # Public without allUsers: works where Domain Restricted Sharing forbids allUsers.
        annotations[INVOKER_IAM_DISABLED] = "true"
    annotations.update(svc.annotations)
    metadata = {
        "name": svc.name,
        "namespace": svc.project,
        "labels": {**rendered.body["labels"], LOCATION_LABEL: svc.region},
        "annotations": annotations,
    }
    revision_annotations = {
        MIN_SCALE: str(svc.scaling.min_instances),
        MAX_SCALE: str(svc.scaling.max_instances),
        # Explicit both ways, like v2's cpuIdle: a replace must not inherit the billing mode.
        CPU_THROTTLING: _flag(not svc.scaling.cpu_always_allocated),
        STARTUP_CPU_BOOST: _flag(svc.scaling.startup_cpu_boost),
    }
    if svc.runtime.gpu is not None:
        revision_annotations[GPU_ZONAL_REDUNDANCY_DISABLED] = _flag(not svc.runtime.gpu.zonal_redundancy)
    aliases = secret_aliases(svc)
    if aliases:
        revision_annotations[SECRETS] = ",".join(f"{alias}:{path}" for path, alias in aliases.items())
    template_metadata = {
        "name": rendered.revision,
        "labels": dict(rendered.body["template"]["labels"]),
        "annotations": revision_annotations,
    }
    template_spec: dict[str, Any] = {
        "containerConcurrency": svc.scaling.concurrency,
        "timeoutSeconds": svc.scaling.timeout_seconds,
    }
    if svc.service_account:
        template_spec["serviceAccountName"] = svc.service_account
    if svc.runtime.gpu is not None:
        template_spec["nodeSelector"] = {ACCELERATOR: svc.runtime.gpu.type}
    template_spec["containers"] = [render_container(svc, aliases)]
    return service_document(metadata, template_metadata, template_spec, render_traffic(svc.traffic))
