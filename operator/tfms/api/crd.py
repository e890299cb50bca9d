"""The CustomResourceDefinition, generated from `schema` (crds/ holds its output)."""

from __future__ import annotations

from typing import Any

from tfms.api import names
from tfms.api.schema import object_schema


def structural(schema: Any) -> Any:
    """The schema as Kubernetes accepts it.

    Kubernetes forbids `additionalProperties` beside `properties` and prunes unknown
    fields itself (kubectl's strict field validation reports them), so that key goes; so do
    our own `x-tfms-*` keywords and `propertyNames` (label keys are checked by validation).
    """
    if isinstance(schema, dict):
        return {k: structural(v) for k, v in schema.items()
                if not (k == "additionalProperties" and v is False)
                and not k.startswith("x-tfms-") and k != "propertyNames"}
    if isinstance(schema, list):
        return [structural(v) for v in schema]
    return schema


def policy_crd() -> dict[str, Any]:
    """The cluster-scoped TFModelServicePolicy CRD (guardrails), from `guardrails.policy_object_schema`."""
    from tfms.api.guardrails import policy_object_schema

    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": names.POLICY_CRD_NAME},
        "spec": {
            "group": names.GROUP,
            "scope": "Cluster",
            "names": {
                "kind": names.POLICY_KIND,
                "listKind": names.POLICY_LIST_KIND,
                "plural": names.POLICY_PLURAL,
                "singular": names.POLICY_SINGULAR,
                "shortNames": list(names.POLICY_SHORT_NAMES),
                "categories": [names.CATEGORY],
            },
            "versions": [{
                "name": names.VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": structural(policy_object_schema())},
                "additionalPrinterColumns": [
                    {"name": "Public", "type": "boolean", "jsonPath": ".spec.publicAllowed"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": names.CRD_NAME},
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": names.KIND,
                "listKind": names.LIST_KIND,
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": list(names.SHORT_NAMES),
                "categories": list(names.CATEGORIES),
            },
            "versions": [{
                "name": names.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": structural(object_schema())},
                "additionalPrinterColumns": [
                    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
                    {"name": "Ready", "type": "string",
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    {"name": "Revision", "type": "string", "jsonPath": ".status.latestReadyRevision"},
                    {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision", "priority": 1},
                    {"name": "Canary", "type": "string", "jsonPath": ".status.canaryRevision"},
                    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryPercent"},
                    {"name": "Reason", "type": "string",
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }


if __name__ == "__main__":
    import yaml

    print(yaml.safe_dump(crd(), sort_keys=False), end="")
