"""Spec -> Knative Serving `Service` (serving.knative.dev/v1) for a plain Knative cluster.

The shapes shared with the Cloud Run v1 flavour (`tfms.render.gcloud`) live here too: the
container, the env, the traffic list and the document skeleton. Both flavours reuse the v2
render's content-hashed revision name as the BYO `spec.template.metadata.name`. Knative
requires a BYO name to change whenever the template changes; every field of the Knative
templates below is derived from a field of the v2 template, so the v2 hash changes with it.

What plain Knative drops, and why (the Cloud Run-only parts of the spec):
- `run.googleapis.com/*` annotations and Cloud Run labels: no Knative controller reads them.
- CPU throttling and startup CPU boost: a pod keeps its CPU limit; there is no such knob.
- IAM (`access.invokers`, `access.public`): Knative has no invoker authorization. Who may
  call the service is the cluster's business (mesh policy, gateway auth).
- `access.ingress`: anything but `all` becomes `networking.knative.dev/visibility:
  cluster-local`, Knative's only other visibility and at least as closed as the Cloud Run
  setting. `none` is refused: Knative cannot close a service to every caller.

What it maps by convention (documented so the cluster can be set up to match):
- `serviceAccount` (a Google service account email) -> `serviceAccountName` = its account ID,
  the Kubernetes service account conventionally bound to it by GKE Workload Identity. If the
  cluster has no such account the revision fails loudly instead of running as `default`.
- Secret Manager refs -> `secretKeyRef {name: SECRET, key: VERSION}`, the same mapping Cloud
  Run v1 uses: a Kubernetes Secret mirrored from Secret Manager with one key per version.
  Another project's secret (`projects/P/secrets/NAME`), or a name Kubernetes does not allow
  (`NGC_API_KEY`), is refused: a Secret lives in the service's namespace under a DNS name.

What it refuses (`KnativeUnsupported`, every problem at once):
- A GPU: the accelerator type needs a `nodeSelector`, which Knative rejects unless the
  `kubernetes.podspec-nodeselector` feature flag is on, and the node label is cluster
  specific; a bare `nvidia.com/gpu` limit would land on whatever GPU the cluster has.
- `timeoutSeconds` above the cluster's `max-revision-timeout-seconds` (600 by default; pass
  the cluster's value if an admin raised it): the webhook would reject it.
- Labels and annotations that are not valid Kubernetes keys or values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from tfms.api import names
from tfms.api.errors import FieldError
from tfms.api.model import Probe, TFModelService, TrafficTarget
from tfms.render.cloudrun import CONTAINER_NAME, GPU_LIMIT, render_service
from tfms.render.tfserving import serving_command

API_VERSION: Final = "serving.knative.dev/v1"
KIND: Final = "Service"
# Knative's config-defaults `max-revision-timeout-seconds` when the admin has not changed it.
DEFAULT_MAX_REVISION_TIMEOUT_SECONDS: Final = 600
# Knative's current (kebab-case) autoscaling keys; only valid on the revision template.
MIN_SCALE: Final = "autoscaling.knative.dev/min-scale"
MAX_SCALE: Final = "autoscaling.knative.dev/max-scale"
VISIBILITY_LABEL: Final = "networking.knative.dev/visibility"
CLUSTER_LOCAL: Final = "cluster-local"

# Kubernetes label/annotation syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue).
_NAME_PART: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class KnativeUnsupported(ValueError):
    """The spec asks for something a plain Knative cluster cannot express; all problems at once."""

    def __init__(self, service: str, problems: list[FieldError]) -> None:
        self.service = service
        self.problems = tuple(sorted(problems))
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{service}: cannot render as a plain Knative Service:\n{lines}")


def qualified_name_ok(key: str) -> bool:
    """A Kubernetes label or annotation key: `[prefix/]name`, name ≤ 63, prefix a DNS subdomain ≤ 253."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not (prefix and len(prefix) <= 253 and _DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(_NAME_PART.match(name))


def label_value_ok(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def render_env(svc: TFModelService, secret_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """TF Serving's generated env first, then the user's; secrets as Kubernetes-style refs.

    `secret_names` renames secrets in refs (Cloud Run v1 refers to other projects' secrets
    by an alias); a secret not in it keeps its own name.
    """
    renamed = secret_names or {}
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in serving_command(svc).env]
    for var in svc.runtime.env:
        if var.secret is not None:
            ref = {"name": renamed.get(var.secret.secret, var.secret.secret), "key": var.secret.version}
            out.append({"name": var.name, "valueFrom": {"secretKeyRef": ref}})
        else:
            out.append({"name": var.name, "value": var.value})
    return out


def _probe(svc: TFModelService, probe: Probe) -> dict[str, Any]:
    """The same HTTP GET on the model status URL as the v2 render (ready once the model loads)."""
    return {
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
        "httpGet": {"path": f"/v1/models/{svc.model.name}", "port": names.CONTAINER_PORT},
    }


def render_container(svc: TFModelService, secret_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The one serving container, in Kubernetes `Container` form."""
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
    }
    env = render_env(svc, secret_names)
    if env:
        container["env"] = env
    container["resources"] = {"limits": limits}
    if svc.runtime.startup_probe is not None:
        container["startupProbe"] = _probe(svc, svc.runtime.startup_probe)
    if svc.runtime.liveness_probe is not None:
        container["livenessProbe"] = _probe(svc, svc.runtime.liveness_probe)
    return container


def render_traffic(targets: tuple[TrafficTarget, ...]) -> list[dict[str, Any]]:
    """Knative's rules, always explicit (B-001): every target has its percent, `latestRevision`
    is true exactly when no revision is named, and an empty spec list is 100% to latest, so a
    split left by an earlier apply never outlives the spec that asked for it."""
    if not targets:
        return [{"latestRevision": True, "percent": 100}]
    out: list[dict[str, Any]] = []
    for target in targets:
        item: dict[str, Any] = {}
        if target.tag:
            item["tag"] = target.tag
        if target.revision:
            item["revisionName"] = target.revision
        item["latestRevision"] = target.latest
        item["percent"] = target.percent
        out.append(item)
    return out


def service_document(metadata: dict[str, Any], template_metadata: dict[str, Any], template_spec: dict[str, Any],
                     traffic: list[dict[str, Any]]) -> dict[str, Any]:
    """The `serving.knative.dev/v1` `Service` skeleton both flavours fill in."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {"template": {"metadata": template_metadata, "spec": template_spec}, "traffic": traffic},
    }


def kubernetes_service_account(email: str) -> str:
    """`fraud-sa@P.iam.gserviceaccount.com` -> `fraud-sa` (see the module docstring)."""
    return email.partition("@")[0]


def _k8s_derived(value: str) -> str:
    """A label value tfms derived under GCP rules, made valid for Kubernetes (ends alphanumeric)."""
    return value.strip("-_")


def unsupported(svc: TFModelService, max_revision_timeout_seconds: int = DEFAULT_MAX_REVISION_TIMEOUT_SECONDS,
                ) -> Iterator[FieldError]:
    """Every reason `svc` cannot become a plain Knative Service (see the module docstring)."""
    if svc.runtime.gpu is not None:
        yield FieldError("spec.runtime.gpu", "knative-gpu",
                         "plain Knative cannot select a GPU type (nodeSelector is behind a feature flag and "
                         "node labels are cluster specific); render --format gcloud or cloudrun instead",
                         svc.runtime.gpu.type)
    if svc.scaling.timeout_seconds > max_revision_timeout_seconds:
        yield FieldError("spec.scaling.timeoutSeconds", "knative-max-timeout",
                         f"Knative allows at most max-revision-timeout-seconds ({max_revision_timeout_seconds})",
                         svc.scaling.timeout_seconds)
    if svc.ingress == "none":
        yield FieldError("spec.access.ingress", "knative-ingress",
                         "Knative cannot close a service to every caller; use internal (cluster-local)",
                         svc.ingress)
    for i, var in enumerate(svc.runtime.env):
        name = var.secret.secret if var.secret is not None else ""
        if name and not (len(name) <= 253 and _DNS1123_SUBDOMAIN.match(name)):
            yield FieldError(f"spec.runtime.env[{i}].secretKeyRef.secret", "knative-secret",
                             "a plain Knative secretKeyRef names a Kubernetes Secret in the service's namespace: "
                             "a lowercase DNS subdomain, not another project's secret", name)
    for key, value in svc.labels:
        if not qualified_name_ok(key) or not label_value_ok(value):
            yield FieldError(f"spec.labels.{key}", "knative-label",
                             "not a valid Kubernetes label (key and value end with a letter or digit)", value)
    for key, _ in svc.annotations:
        if not qualified_name_ok(key):
            yield FieldError(f"spec.annotations.{key}", "knative-annotation",
                             "not a valid Kubernetes annotation key", key)


def render_knative(svc: TFModelService, *,
                   max_revision_timeout_seconds: int = DEFAULT_MAX_REVISION_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The plain Knative `Service`, or `KnativeUnsupported` naming every field it cannot carry."""
    problems = list(unsupported(svc, max_revision_timeout_seconds))
    if problems:
        raise KnativeUnsupported(svc.name, problems)
    rendered = render_service(svc)
    # The user's labels were checked above, so trimming only ever touches tfms's own values.
    labels = {k: _k8s_derived(v) for k, v in rendered.body["labels"].items()}
    if svc.ingress != "all":
        labels[VISIBILITY_LABEL] = CLUSTER_LOCAL
    metadata: dict[str, Any] = {"name": svc.name, "namespace": svc.namespace, "labels": labels}
    if svc.annotations:
        metadata["annotations"] = dict(svc.annotations)
    template_metadata = {
        "name": rendered.revision,
        "labels": {k: _k8s_derived(v) for k, v in rendered.body["template"]["labels"].items()},
        "annotations": {MIN_SCALE: str(svc.scaling.min_instances), MAX_SCALE: str(svc.scaling.max_instances)},
    }
    template_spec: dict[str, Any] = {
        "containerConcurrency": svc.scaling.concurrency,
        "timeoutSeconds": svc.scaling.timeout_seconds,
    }
    if svc.service_account:
        template_spec["serviceAccountName"] = kubernetes_service_account(svc.service_account)
    template_spec["containers"] = [render_container(svc)]
    return service_document(metadata, template_metadata, template_spec, render_traffic(svc.traffic))
