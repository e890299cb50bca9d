"""Every name tfms derives or recognises, in one place.

Names are contracts with Cloud Run, Kubernetes and users' tooling; keeping them together
makes a rename a one-line change and keeps derived names within their length budgets.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

GROUP: Final = "serving.tfms.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TFModelService"
LIST_KIND: Final = "TFModelServiceList"
PLURAL: Final = "tfmodelservices"
SINGULAR: Final = "tfmodelservice"
SHORT_NAMES: Final = ("tfms",)
# Never a category equal to a short name: kubectl expands categories first, so `kubectl get tfms
# NAME` would mean both kinds at once. `kubectl get tfms-all` lists every tfms resource.
CATEGORY: Final = "tfms-all"
CATEGORIES: Final = ("all", CATEGORY)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# Cloud Run service IDs: a letter first, no trailing hyphen, fewer than 50 characters (v2).
SERVICE_ID_MAX: Final = 49
SERVICE_ID_RE: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1035_MAX: Final = 63
DNS1035_RE: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes namespaces are DNS-1123 labels; tfms also writes the namespace into a Cloud Run label.
DNS1123_LABEL_MAX: Final = 63
DNS1123_LABEL_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# TF Serving model names end up in URL paths; keep them to what every client can type.
MODEL_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Labels tfms puts on every Cloud Run service it creates. GCP label keys and values allow
# only lowercase letters, digits, '_' and '-' (no dots or slashes), up to 63 characters.
LABEL_MANAGED_BY: Final = "managed-by"
MANAGED_BY_VALUE: Final = "tfms"
LABEL_NAMESPACE: Final = "tfms-namespace"
LABEL_NAME: Final = "tfms-name"
LABEL_MODEL: Final = "tfms-model"
LABEL_UID: Final = "tfms-uid"  # the owning object's UID, when it lives in a cluster (B-040)
OWNERSHIP_LABELS: Final = (LABEL_MANAGED_BY, LABEL_NAMESPACE, LABEL_NAME, LABEL_UID)

# Annotation on the Cloud Run service (v2 allows keys outside Google's own prefixes).
ANNOTATION_PREFIX: Final = "tfms.dev/"
# On the Cloud Run service: the invoker members tfms itself granted (a sorted JSON list), so
# additive IAM management survives losing the cluster and never removes anyone else's grant.
INVOKERS_ANNOTATION: Final = "tfms.dev/invokers"
INVOKER_ROLE: Final = "roles/run.invoker"
ALL_USERS: Final = "allUsers"
PUBLIC_MEMBERS: Final = ("allUsers", "allAuthenticatedUsers")
INVOKERS_ADDITIVE: Final = "Additive"
INVOKERS_AUTHORITATIVE: Final = "Authoritative"
# Who tfms is in audit records (the operator's own identity comes from ADC; this names the tool).
AUDIT_ACTOR: Final = "tfms"

# The cluster-scoped guardrail resource platform owners write once.
POLICY_KIND: Final = "TFModelServicePolicy"
POLICY_LIST_KIND: Final = "TFModelServicePolicyList"
POLICY_PLURAL: Final = "tfmodelservicepolicies"
POLICY_SINGULAR: Final = "tfmodelservicepolicy"
POLICY_SHORT_NAMES: Final = ("tfmspolicy",)
POLICY_CRD_NAME: Final = f"{POLICY_PLURAL}.{GROUP}"
# kopf's bookkeeping annotations (progress, last handled spec): a prefix of their own, since kopf
# ignores changes under it and users annotate under tfms.dev/.
KOPF_PREFIX: Final = "kopf.tfms.dev"

# The validating webhook kopf serves (and, in managed mode, registers under this name).
WEBHOOK_CONFIGURATION: Final = "tfms.serving.tfms.dev"
WEBHOOK_ID: Final = "validate.tfmodelservices.serving.tfms.dev"

# On a TFModelService: an on-demand rollout action for kubectl users (removed once applied).
ROLLOUT_ACTION_ANNOTATION: Final = "tfms.dev/rollout-action"

# The container port Cloud Run sends requests to; TF Serving's REST API listens there.
CONTAINER_PORT: Final = 8080
# TF Serving's gRPC port inside the container; never the REST port (REST would be skipped).
TFSERVING_GRPC_PORT: Final = 8500
DEFAULT_IMAGE: Final = "tensorflow/serving:2.19.0"
MODEL_CONFIG_ENV: Final = "TFMS_MODEL_CONFIG"

REVISION_HASH_LEN: Final = 8
# Knative/Cloud Run reserve names with these prefixes for themselves (v2 rejects them).
RESERVED_KEY_PREFIXES: Final = (
    "run.googleapis.com/",
    "cloud.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
)


def service_name(project: str, region: str, service_id: str) -> str:
    return f"projects/{project}/locations/{region}/services/{service_id}"


def location_name(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}"


def revision_full_name(project: str, region: str, service_id: str, revision: str) -> str:
    return f"{service_name(project, region, service_id)}/revisions/{revision}"


def short_name(full_name: str) -> str:
    """The last path segment of a Cloud Run resource name."""
    return full_name.rsplit("/", 1)[-1]


def content_hash(content: Mapping[str, Any]) -> str:
    """A stable digest of JSON-like content: key order and formatting never matter."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def revision_name(service_id: str, template: Mapping[str, Any]) -> str:
    """`{service}-{hash}` of the template without its own name.

    Same content gives the same name (a re-apply is a no-op) and any change gives a new one,
    so tfms never reuses a name for a different template (Cloud Run answers 409 to that).
    """
    body = {k: v for k, v in template.items() if k != "revision"}
    return f"{service_id}-{content_hash(body)[:REVISION_HASH_LEN]}"


def revision_name_budget() -> int:
    """The longest service ID whose derived revision names still fit a DNS-1035 label."""
    return DNS1035_MAX - 1 - REVISION_HASH_LEN
