"""The TFModelService schema, defined once.

The CRD in `crds/` is generated from this (so the API server enforces it at apply time) and
`validation` checks the same schema in the CLI and the reconciler, so every path refuses the
same specs. Descriptions make `kubectl explain` useful. Rules that need more than one field
are CEL rules here (`x-kubernetes-validations`, enforced by the API server) and Python rules
in `validation` (enforced everywhere).
"""

from __future__ import annotations

from typing import Any, Final

from tfms.api import names

JSON = dict[str, Any]
CEL = "x-kubernetes-validations"


RULE = "x-tfms-rule"
MESSAGE = "x-tfms-message"


def _str(description: str, **extra: Any) -> JSON:
    return {"type": "string", "description": description, **extra}


def _named(schema: JSON, rule: str, message: str) -> JSON:
    """Give a schema's keyword failures a rule name and a human message (the CRD drops these keys)."""
    return {**schema, RULE: rule, MESSAGE: message}


def _int(description: str, **extra: Any) -> JSON:
    return {"type": "integer", "description": description, **extra}


def _num(description: str, **extra: Any) -> JSON:
    return {"type": "number", "description": description, **extra}


def _bool(description: str, **extra: Any) -> JSON:
    return {"type": "boolean", "description": description, **extra}


def _list(description: str, items: JSON, max_items: int, **extra: Any) -> JSON:
    return {"type": "array", "description": description, "items": items, "maxItems": max_items, **extra}


def _obj(description: str, properties: JSON, required: list[str] | None = None,
         rules: list[JSON] | None = None) -> JSON:
    out: JSON = {"type": "object", "description": description, "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    if rules:
        out[CEL] = rules
    return out


def _rule(rule: str, message: str, field_path: str = "") -> JSON:
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
LABEL_KEY_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,62}$"
LABEL_VALUE_PATTERN: Final = r"^[a-z0-9_-]{0,63}$"
_DNS_LABEL_RE: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL_RE: Final = rf"[A-Za-z0-9!#$%&'*+=?^_`{{|}}~./-]+@(?:{_DNS_LABEL_RE}\.)+[A-Za-z]{{2,}}"
MEMBER_PATTERN: Final = (
    # What IAM takes: an email whose domain is DNS labels and a top-level domain of letters, a
    # lowercase domain: name, principal(Set):// identifiers under iam.googleapis.com. Anything
    # looser passes here and fails at SetIamPolicy, after the service was deployed.
    rf"^(user|group|serviceAccount):{_EMAIL_RE}$"
    r"|^domain:(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$"
    r"|^principal(Set)?://iam\.googleapis\.com/\S+$"
)

_SECRET_REF: Final = _obj(
    "A Secret Manager secret version exposed as this variable's value (never a plain value).",
    {
        "secret": _str("Secret name, or projects/P/secrets/NAME for another project.", minLength=1,
                       maxLength=512),
        "version": _str("Secret version number, or `latest` (pin a number for reproducible revisions).",
                        pattern=r"^([1-9][0-9]*|latest)$"),
    },
    ["secret"],
)

_ENV_VAR: Final = _obj(
    "An environment variable of the model server container: a plain value or a secret reference.",
    {
        "name": _str("Variable name.", minLength=1, maxLength=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
        "value": _named(_str("Plain value (at most 32 KiB). Credentials belong in secretKeyRef, not here.",
                             maxLength=32768), "env-value-size", "a value may be at most 32 KiB"),
        "secretKeyRef": _SECRET_REF,
    },
    ["name"],
    rules=[_rule("!(has(self.value) && has(self.secretKeyRef))",
                   "set either value or secretKeyRef, not both")],
)

_PROBE: Final = _obj(
    "An HTTP probe on TF Serving's model status URL (/v1/models/NAME); TF Serving has no /healthz.",
    {
        "initialDelaySeconds": _int("Seconds before the first probe.", minimum=0, maximum=3600),
        "periodSeconds": _int("Seconds between probes.", minimum=1, maximum=3600),
        "timeoutSeconds": _int("Seconds before a probe times out; at most periodSeconds.",
                               minimum=1, maximum=3600),
        "failureThreshold": _int("Consecutive failures before the container is restarted.",
                                 minimum=1, maximum=100),
    },
    rules=[_rule("!has(self.timeoutSeconds) || !has(self.periodSeconds) || "
                   "self.timeoutSeconds <= self.periodSeconds",
                   "timeoutSeconds must not exceed periodSeconds")],
)

_TRAFFIC_TARGET: Final = _obj(
    "One traffic target: a revision (or the latest ready one) with a percentage and an optional tag.",
    {
        "revision": _str(
            "A revision of this service to pin, named `{service}-...`; omit to follow the latest ready revision.",
            maxLength=63,
        ),
        "latestRevision": _bool("Follow the latest ready revision. Mutually exclusive with `revision`."),
        "percent": _int("Share of requests, 0-100; all targets together sum to exactly 100. A single "
                        "target without a percent gets 100.", minimum=0, maximum=100),
        "tag": _named(
            _str("A DNS-1035 label giving this target its own URL (`https://TAG---SERVICE...`); unique per "
                 "service.", maxLength=63, pattern=names.DNS1035_RE.pattern),
            "dns-1035-label", "tags must be DNS-1035 labels: a lowercase letter first, then lowercase letters, "
            "digits or '-', not ending with '-', at most 63 characters"),
    },
    rules=[_rule("!(has(self.revision) && has(self.latestRevision) && self.latestRevision)",
                   "latestRevision must be false when revision is set"),
             _rule("has(self.revision) || !has(self.latestRevision) || self.latestRevision",
                   "name a revision, or set latestRevision: true")],
)

_RESOURCES: Final = _obj(
    "CPU and memory of each instance (Cloud Run's CPU/memory matrix applies).",
    {
        "cpu": _str("vCPUs: 0.08-<1 in steps of 0.001, or 1, 2, 4, 6, 8 (e.g. \"2\", \"500m\")."),
        "memory": _str("Memory, e.g. 512Mi, 2Gi, 16Gi."),
    },
)

_GPU: Final = _obj(
    "One GPU per instance. Needs a -gpu image, CPU always allocated, a GPU region and enough CPU/memory.",
    {
        "type": _str("Accelerator.", enum=["nvidia-l4", "nvidia-rtx-pro-6000"]),
        "zonalRedundancy": _bool("Reserve capacity across zones (default true); false is cheaper, "
                                 "best-effort capacity."),
    },
    ["type"],
)

_BATCHING: Final = _obj(
    "TF Serving's native request batching (--enable_batching and a generated batching parameters file). "
    "A batch fills only from requests running on one instance at once, so with batchTimeoutMicros above 0 "
    "scaling.concurrency must be at least maxBatchSize.",
    {
        "maxBatchSize": _int("Largest batch.", minimum=1, maximum=100000),
        "batchTimeoutMicros": _int("Longest wait to fill a batch, in microseconds (TF Serving's default 0: never "
                                   "wait).", minimum=0, maximum=10_000_000),
        "maxEnqueuedBatches": _int("Queue bound, in batches.", minimum=1, maximum=10_000_000),
        "numBatchThreads": _int("Threads processing batches.", minimum=1, maximum=1024),
        "allowedBatchSizes": _list("Batch sizes to pad batches up to, strictly increasing, the last equal to "
                                   "maxBatchSize.", {"type": "integer", "minimum": 1, "maximum": 100000}, 64),
    },
    ["maxBatchSize"],
)

MONITORING_PATH_DEFAULT: Final = "/monitoring/prometheus/metrics"
_MONITORING: Final = _obj(
    "TF Serving's Prometheus metrics (--monitoring_config_file), served on the REST port, so anyone allowed to "
    "invoke the service can read them.",
    {
        "enabled": _bool("Serve the metrics (default true once monitoring is set)."),
        "path": _named(
            _str(f"URL path of the metrics (default {MONITORING_PATH_DEFAULT}).", maxLength=256,
                 pattern=r"^/[A-Za-z0-9._~/-]*$"),
            "monitoring-path", "an absolute URL path of letters, digits and . _ ~ / -"),
    },
)

LABEL_NAME_PATTERN: Final = r"^[a-zA-Z0-9_]+$"
_VERSION_LABELS: Final = {
    "type": "object",
    "description": "TF Serving version labels, label -> version, served at /v1/models/NAME/labels/LABEL:predict. "
                   "Every labelled version is loaded (beside the pinned one); a request without a version or label "
                   "gets the highest loaded version.",
    "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 2**53},
    "propertyNames": _named({"pattern": LABEL_NAME_PATTERN}, "version-label",
                            "version labels are letters, digits and '_' only (B-026: REST label paths)"),
    "maxProperties": 32,
    CEL: [_rule(f"self.all(k, k.matches('{LABEL_NAME_PATTERN}'))",
                "version labels are letters, digits and '_' only")],
}

_ANALYSIS: Final = _obj(
    "Metric checks a canary must pass at each step, or it is rolled back.",
    {
        "maxErrorRate": _num("Highest acceptable 5xx ratio, 0-1.", minimum=0, maximum=1),
        "maxP99LatencyMs": _int("Highest acceptable p99 latency in milliseconds.", minimum=1, maximum=3_600_000),
        "minRequestCount": _int("Requests needed before a step can be judged.", minimum=0, maximum=10_000_000),
        "failureLimit": _int("Failed checks tolerated before rolling back.", minimum=0, maximum=100),
    },
)

_ROLLOUT: Final = _obj(
    "How a new revision takes over from the stable one.",
    {
        "strategy": _str("immediate: 100% once Ready; canary: traffic moves in steps.",
                         enum=["immediate", "canary"]),
        "steps": _list("Canary percentages, strictly increasing, ending at 100.",
                       {"type": "integer", "minimum": 1, "maximum": 100}, 20),
        "interval": _str("Time at each step before the next, e.g. 5m.", pattern=DURATION_PATTERN),
        "manualGates": _bool("Wait for an approval before each step."),
        "analysis": _ANALYSIS,
    },
    rules=[_rule("!has(self.steps) || size(self.steps) == 0 || self.steps[size(self.steps) - 1] == 100",
                   "the last canary step must be 100", ".steps"),
             _rule("!has(self.steps) || self.steps.all(s, self.steps.filter(t, t <= s).size() == "
                   "self.steps.indexOf(s) + 1)", "canary steps must be strictly increasing", ".steps")],
)

SPEC_SCHEMA: Final[JSON] = _obj(
    "Desired state of a TensorFlow model served on Cloud Run.",
    {
        "project": _named(
            _str("Google Cloud project ID. Defaults to the operator's TFMS_PROJECT.",
                 pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"),
            "project-id", "a project ID is 6-30 lowercase letters, digits or '-', starting with a letter"),
        "region": _named(
            _str("Cloud Run region, e.g. us-central1. Defaults to the operator's TFMS_REGION.",
                 pattern=r"^[a-z]+-[a-z]+[0-9]+$"),
            "region", "must be a Cloud Run region such as us-central1"),
        "model": _obj(
            "The SavedModel to serve.",
            {
                "name": _str(
                    "TF Serving model name: the NAME in /v1/models/NAME:predict.",
                    minLength=1, maxLength=128, pattern=names.MODEL_NAME_RE.pattern,
                ),
                "basePath": _str(
                    "Directory holding numeric version subdirectories (1/, 2/ ...): gs://bucket/path, "
                    "a path baked into the image, or a local directory for `tfms up`.",
                    minLength=1, maxLength=1024,
                ),
                "version": _int(
                    "Serve exactly this model version. Without it TF Serving serves the newest version, "
                    "so a new version directory would change the served model by itself.",
                    minimum=1, maximum=2**53,
                ),
                "signatureName": _str("Signature clients call; defaults to serving_default. Pre-flight checks the "
                                      "model has it.", maxLength=256),
                "versionLabels": _VERSION_LABELS,
            },
            ["name", "basePath"],
        ),
        "runtime": _obj(
            "The TensorFlow Serving container.",
            {
                "image": _str(
                    "TF Serving image pinned to a version or digest (never `latest`); a -gpu image with a GPU.",
                    minLength=1, maxLength=1024,
                    **{CEL: [_rule("!self.endsWith(':latest') && !self.contains(':latest-')",
                                   "the image must be pinned to a version or digest, not latest")]},
                ),
                "resources": _RESOURCES,
                "gpu": _GPU,
                "batching": _BATCHING,
                "env": _list("Environment variables of the container.", _ENV_VAR, 1000),
                "args": _list("Extra tensorflow_model_server flags, appended after the generated ones.",
                              {"type": "string", "maxLength": 4096}, 100),
                "startupProbe": _PROBE,
                "livenessProbe": _PROBE,
                "monitoring": _MONITORING,
                "warmup": _bool("Replay the model's assets.extra/tf_serving_warmup_requests while each version "
                                "loads, before it takes requests (--enable_model_warmup; default true)."),
            },
        ),
        "scaling": _obj(
            "Instance scaling and request handling of each revision.",
            {
                "minInstances": _int("Instances kept warm (0 scales to zero).", minimum=0, maximum=1000),
                "maxInstances": _int("Upper bound on instances.", minimum=1, maximum=1000),
                "concurrency": _int("Maximum concurrent requests per instance (1 when CPU is below 1).",
                                    minimum=1, maximum=1000),
                "timeoutSeconds": _int("Request timeout in seconds.", minimum=1, maximum=3600),
                "cpuAlwaysAllocated": _bool("Instance-based billing: CPU outside requests too "
                                            "(required with a GPU)."),
                "startupCpuBoost": _bool("Extra CPU while an instance starts (faster model loads)."),
            },
            rules=[_rule("!has(self.minInstances) || !has(self.maxInstances) || "
                           "self.minInstances <= self.maxInstances",
                           "minInstances must not exceed maxInstances", ".minInstances")],
        ),
        "serviceAccount": _named(
            _str("Service account email the revision runs as (workload identity; no key files).",
                 pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[-a-z0-9.]+\.iam\.gserviceaccount\.com$"
                         r"|^[0-9]+-compute@developer\.gserviceaccount\.com$"),
            "service-account", "must be a service account email (NAME@PROJECT.iam.gserviceaccount.com)"),
        "access": _obj(
            "Who may reach the model.",
            {
                "invokers": _list(
                    "Members granted roles/run.invoker: user:, group:, serviceAccount:, domain:, principal:// "
                    "(use public for allUsers).",
                    _named({"type": "string", "maxLength": 512, "pattern": MEMBER_PATTERN}, "invoker-member",
                           "members are user:EMAIL, group:EMAIL, serviceAccount:EMAIL (an email with a dotted "
                           "domain), domain:DNS.NAME or principal(Set)://...; use public: true instead of "
                           "allUsers"), 1500,
                ),
                "invokersMode": _str(
                    "Additive (default): tfms adds and removes only the roles/run.invoker members it granted "
                    "itself (remembered on the Cloud Run service), so grants made by others survive. "
                    "Authoritative: the roles/run.invoker binding is exactly invokers (plus allUsers when "
                    "public); every other member of that role is removed. Other roles are never touched.",
                    enum=[names.INVOKERS_ADDITIVE, names.INVOKERS_AUTHORITATIVE]),
                "public": _bool("Anyone may invoke (allUsers, or invoker IAM disabled where the "
                                "organisation forbids allUsers). Never implied."),
                "ingress": _str("Where requests may come from.",
                                enum=["all", "internal", "internal-and-cloud-load-balancing", "none"]),
            },
        ),
        "labels": {
            "type": "object", "description": "Labels on the Cloud Run service (GCP label rules).",
            "additionalProperties": _named({"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN},
                                           "label-value", "label values are at most 63 lowercase letters, "
                                           "digits, '_' or '-'"),
            "propertyNames": _named({"pattern": LABEL_KEY_PATTERN}, "label-key",
                                    "label keys start with a lowercase letter and hold at most 63 lowercase "
                                    "letters, digits, '_' or '-'"),
            "maxProperties": 48,
        },
        "annotations": {
            "type": "object",
            "description": "Annotations on the Cloud Run service; Google's and Knative's prefixes are rejected.",
            "additionalProperties": {"type": "string", "maxLength": 65536},
            "maxProperties": 64,
        },
        "traffic": _list("Explicit traffic split. Empty: 100% to the latest ready revision.",
                         _TRAFFIC_TARGET, 15),
        "rollout": _ROLLOUT,
        "paused": _bool("Stop reconciling (Cloud Run is left as it is) until set back to false."),
        "deletionPolicy": _str(
            "Delete removes the Cloud Run service with this object; Abandon leaves it and drops ownership.",
            enum=["Delete", "Abandon"],
        ),
    },
    ["model"],
    rules=[
        _rule("!has(self.traffic) || size(self.traffic) <= 1 || "
              "self.traffic.map(t, has(t.percent) ? t.percent : 0).sum() == 100",
              "traffic percentages must sum to exactly 100", ".traffic"),
        _rule("!has(self.traffic) || size(self.traffic) != 1 || !has(self.traffic[0].percent) || "
              "self.traffic[0].percent == 100", "a single traffic target takes 100 percent", ".traffic"),
        _rule("!has(self.traffic) || self.traffic.all(t, !has(t.tag) || "
              "self.traffic.filter(u, has(u.tag) && u.tag == t.tag).size() == 1)",
              "traffic tags must be unique", ".traffic"),
        _rule("!has(self.runtime) || !has(self.runtime.gpu) || !has(self.scaling) || "
              "!has(self.scaling.cpuAlwaysAllocated) || self.scaling.cpuAlwaysAllocated",
              "a GPU needs CPU always allocated", ".scaling.cpuAlwaysAllocated"),
        _rule("!has(self.rollout) || !has(self.rollout.strategy) || self.rollout.strategy != 'canary' || "
              "!has(self.traffic) || size(self.traffic) == 0",
              "a canary rollout manages traffic itself; leave spec.traffic empty", ".traffic"),
    ],
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

_TRAFFIC_STATUS: Final = {
    "type": "object",
    "properties": {
        "revision": {"type": "string"},
        "latestRevision": {"type": "boolean"},
        "percent": {"type": "integer"},
        "tag": {"type": "string"},
        "url": {"type": "string"},
    },
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
        "stableRevision": {"type": "string"},
        "canaryRevision": {"type": "string"},
        "canaryPercent": {"type": "integer"},
        "model": {
            "type": "object",
            "description": "What pre-flight found at spec.model.basePath.",
            "properties": {
                "basePath": {"type": "string"},
                "resolvedVersion": {"type": "integer",
                                    "description": "The version requests without a version or label get."},
                "versions": {"type": "array", "items": {"type": "integer"},
                             "description": "The versions TF Serving will load."},
                "savedModelGeneration": {"type": "string", "description": "Cloud Storage object generation of "
                                         "the resolved version's saved_model.pb."},
                "signatureName": {"type": "string"},
                "observedGeneration": {"type": "integer"},
            },
        },
        "conditions": {"type": "array", "items": _CONDITION},
        "traffic": {"type": "array", "items": _TRAFFIC_STATUS},
        "access": {
            "type": "object",
            "description": "Who may invoke the service, as tfms last applied it.",
            "properties": {
                "invokersMode": {"type": "string"},
                "managedInvokers": {"type": "array", "items": {"type": "string"},
                                    "description": "roles/run.invoker members tfms granted (and may revoke)."},
                "otherInvokers": {"type": "array", "items": {"type": "string"},
                                  "description": "roles/run.invoker members granted outside tfms, left alone."},
                "public": {"type": "string", "description": "allUsers, or invokerIamDisabled where the "
                           "organisation forbids allUsers; absent when not public."},
                "message": {"type": "string"},
            },
        },
        "rollout": {
            "type": "object",
            "description": "The current or last canary rollout (also kept on the Cloud Run service).",
            "properties": {
                "phase": {"type": "string"},
                "revision": {"type": "string"},
                "stableRevision": {"type": "string"},
                "step": {"type": "integer"},
                "weight": {"type": "integer"},
                "stepStarted": {"type": "string"},
                "failures": {"type": "integer"},
                "message": {"type": "string"},
                "analysis": {"type": "object", "properties": {
                    "requests": {"type": "integer"}, "errorRate": {"type": "number"}, "p99Ms": {"type": "number"}}},
            },
        },
    },
}

# Kubernetes lets a CRD restrict metadata.name (and only it): the name is the Cloud Run service ID.
METADATA_SCHEMA: Final[JSON] = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": names.SERVICE_ID_MAX,
                            "pattern": names.SERVICE_ID_RE.pattern}},
}

ROOT_RULES: Final = [
    _rule("!has(self.spec.traffic) || self.spec.traffic.all(t, !has(t.revision) || "
          "t.revision.startsWith(self.metadata.name + '-'))",
          "pinned revisions of this service are named '{metadata.name}-...'", ".spec.traffic"),
]


def object_schema() -> JSON:
    """The schema of a whole TFModelService object, as the CRD declares it."""
    return {
        "type": "object",
        "description": "A TensorFlow model served on Google Cloud Run, managed by tfms.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": METADATA_SCHEMA,
            "spec": SPEC_SCHEMA,
            "status": STATUS_SCHEMA,
        },
        "required": ["spec"],
        CEL: ROOT_RULES,
    }
