"""The TFModelService schema, defined once.

The CRD in `crds/` is generated from this (so the API server enforces it at apply time) and
`validation` checks the same schema in the CLI and the reconciler, so every path refuses the
same specs. Descriptions make `kubectl explain` useful.
"""

from __future__ import annotations

from typing import Any, Final

from tfms.api import names

JSON = dict[str, Any]


def _str(description: str, **extra: Any) -> JSON:
    return {"type": "string", "description": description, **extra}


def _int(description: str, **extra: Any) -> JSON:
    return {"type": "integer", "description": description, **extra}


def _bool(description: str, **extra: Any) -> JSON:
    return {"type": "boolean", "description": description, **extra}


def _obj(description: str, properties: JSON, required: list[str] | None = None) -> JSON:
    out: JSON = {"type": "object", "description": description, "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


_ENV_VAR: Final = _obj(
    "An environment variable of the model server container.",
    {
        "name": _str("Variable name.", minLength=1, maxLength=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
        "value": _str("Plain value (at most 32 KiB). Credentials belong in Secret Manager, not here."),
    },
    ["name"],
)

_TRAFFIC_TARGET: Final = _obj(
    "One traffic target: a revision (or the latest ready one) with a percentage and an optional tag.",
    {
        "revision": _str(
            "A revision of this service to pin, named `{service}-…`; omit to follow the latest ready revision.",
            maxLength=63,
        ),
        "latestRevision": _bool("Follow the latest ready revision. Mutually exclusive with `revision`."),
        "percent": _int("Share of requests, 0-100. All targets together must sum to exactly 100.",
                        minimum=0, maximum=100),
        "tag": _str(
            "A DNS-1035 label giving this target its own URL (`https://TAG---SERVICE…`); unique per service.",
            maxLength=63,
        ),
    },
)

SPEC_SCHEMA: Final[JSON] = _obj(
    "Desired state of a TensorFlow model served on Cloud Run.",
    {
        "project": _str("Google Cloud project ID. Defaults to the operator's TFMS_PROJECT."),
        "region": _str("Cloud Run region, e.g. us-central1. Defaults to the operator's TFMS_REGION."),
        "model": _obj(
            "The SavedModel to serve.",
            {
                "name": _str(
                    "TF Serving model name: the NAME in /v1/models/NAME:predict.",
                    minLength=1, maxLength=128, pattern=names.MODEL_NAME_RE.pattern,
                ),
                "basePath": _str(
                    "Directory holding numeric version subdirectories (1/, 2/ …): gs://bucket/path, "
                    "a path baked into the image, or a local directory for `tfms up`.",
                    minLength=1, maxLength=1024,
                ),
                "version": _int(
                    "Serve exactly this model version. Without it TF Serving serves the newest version, "
                    "so a new version directory would change the served model by itself.",
                    minimum=1,
                ),
                "signatureName": _str("Signature clients call; defaults to serving_default.", maxLength=256),
            },
            ["name", "basePath"],
        ),
        "runtime": _obj(
            "The TensorFlow Serving container.",
            {
                "image": _str(
                    "TF Serving image pinned to a version or digest (never `latest`).",
                    minLength=1, maxLength=1024,
                ),
                "resources": _obj(
                    "CPU and memory limits of each instance.",
                    {
                        "cpu": _str("vCPUs, e.g. \"1\", \"2\", \"4\" or \"1000m\"."),
                        "memory": _str("Memory, e.g. 512Mi, 2Gi."),
                    },
                ),
                "env": {
                    "type": "array",
                    "description": "Environment variables of the container.",
                    "items": _ENV_VAR,
                    "maxItems": 1000,
                },
                "args": {
                    "type": "array",
                    "description": "Extra tensorflow_model_server flags, appended after the generated ones.",
                    "items": {"type": "string", "maxLength": 4096},
                    "maxItems": 100,
                },
            },
        ),
        "scaling": _obj(
            "Instance scaling and request handling of each revision.",
            {
                "minInstances": _int("Instances kept warm (0 scales to zero).", minimum=0, maximum=1000),
                "maxInstances": _int("Upper bound on instances.", minimum=1, maximum=1000),
                "concurrency": _int("Maximum concurrent requests per instance.", minimum=1, maximum=1000),
                "timeoutSeconds": _int("Request timeout in seconds.", minimum=1, maximum=3600),
            },
        ),
        "serviceAccount": _str("Service account email the revision runs as (workload identity)."),
        "access": _obj(
            "Who may reach the model.",
            {
                "ingress": _str(
                    "Where requests may come from.",
                    enum=["all", "internal", "internal-and-cloud-load-balancing", "none"],
                ),
            },
        ),
        "traffic": {
            "type": "array",
            "description": "Explicit traffic split. Empty: 100% to the latest ready revision.",
            "items": _TRAFFIC_TARGET,
            "maxItems": 100,
        },
        "deletionPolicy": _str(
            "Delete removes the Cloud Run service with this object; Abandon leaves it and drops ownership.",
            enum=["Delete", "Abandon"],
        ),
    },
    ["model"],
)

_CONDITION: Final = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer"},
    },
    "required": ["type", "status"],
}

STATUS_SCHEMA: Final[JSON] = {
    "type": "object",
    "description": "Observed state, written only by tfms.",
    "properties": {
        "observedGeneration": {"type": "integer"},
        "url": {"type": "string"},
        "service": {"type": "string", "description": "Full Cloud Run service name."},
        "latestCreatedRevision": {"type": "string"},
        "latestReadyRevision": {"type": "string"},
        "desiredRevision": {"type": "string"},
        "conditions": {"type": "array", "items": _CONDITION},
        "traffic": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "revision": {"type": "string"},
                    "latestRevision": {"type": "boolean"},
                    "percent": {"type": "integer"},
                    "tag": {"type": "string"},
                    "url": {"type": "string"},
                },
            },
        },
    },
}


def object_schema() -> JSON:
    """The schema of a whole TFModelService object, as the CRD declares it."""
    return {
        "type": "object",
        "description": "A TensorFlow model served on Google Cloud Run, managed by tfms.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": SPEC_SCHEMA,
            "status": STATUS_SCHEMA,
        },
        "required": ["spec"],
    }
