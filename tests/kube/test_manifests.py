"""`kubectl apply -k manifests/`: renders, is least-privilege and hardened, and the API server
accepts its CRDs (server-side dry run). Argo CD's health script reads our conditions right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kopf
import lupa
import pytest
import yaml

from tests.kube.cluster import REPO, KubeCluster

MANIFESTS = REPO / "manifests"


@pytest.fixture(scope="module")
def rendered(kube: KubeCluster) -> list[dict[str, Any]]:
    out = kube.kubectl("kustomize", str(MANIFESTS), check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_kustomization_renders_every_part(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == sorted(["Namespace", "CustomResourceDefinition", "CustomResourceDefinition",
                            "CustomResourceDefinition", "ClusterKopfPeering", "ServiceAccount", "ClusterRole",
                            "ClusterRoleBinding", "Deployment", "Service", "Issuer", "Certificate",
                            "ValidatingWebhookConfiguration"])
    crds = {d["metadata"]["name"]: d for d in _kind(rendered, "CustomResourceDefinition")}
    assert crds["tfmodelservices.serving.tfms.dev"] == yaml.safe_load(
        (REPO / "crds" / "tfmodelservice.yaml").read_text())
    assert crds["tfmodelservicepolicies.serving.tfms.dev"] == yaml.safe_load(
        (REPO / "crds" / "tfmodelservicepolicy.yaml").read_text())


def test_crds_pass_the_api_servers_dry_run(kube: KubeCluster, rendered: list[dict[str, Any]]) -> None:
    crds = yaml.safe_dump_all(_kind(rendered, "CustomResourceDefinition"))
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=crds)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == 3


def test_rbac_is_least_privilege(rendered: list[dict[str, Any]]) -> None:
    (role,) = _kind(rendered, "ClusterRole")
    grants = {(group, resource): set(rule["verbs"])
              for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}
    assert grants[("serving.tfms.dev", "tfmodelservices")] == {"get", "list", "watch", "patch"}
    assert grants[("serving.tfms.dev", "tfmodelservices/status")] == {"get", "patch"}
    assert grants[("", "events")] == {"create"}
    assert grants[("serving.tfms.dev", "tfmodelservicepolicies")] == {"get", "list", "watch"}
    assert all("*" not in verbs for verbs in grants.values())
    assert not [k for k in grants if k[1] in ("secrets", "configmaps", "pods")]
    creators = [k for k, verbs in grants.items() if verbs & {"create", "delete", "update"}]
    assert sorted(creators) == [("", "events"), ("events.k8s.io", "events")]
    (binding,) = _kind(rendered, "ClusterRoleBinding")
    (account,) = _kind(rendered, "ServiceAccount")
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]


def test_deployment_is_hardened_and_probed(rendered: list[dict[str, Any]]) -> None:
    (deployment,) = _kind(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sec = container["securityContext"]
    assert sec == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert container["args"][0] == "operator" and "--peering" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert not container["image"].endswith(":latest") and ":" in container["image"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def _health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    script = (MANIFESTS / "argocd" / "tfmodelservice-health.lua").read_text()
    result = lua.execute(script)
    return str(result["status"]), str(result["message"])


def _obj(generation: int, observed: int | None, ready: str | None, reason: str = "Ready") -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"generation": generation}}
    if observed is not None:
        obj["status"] = {"observedGeneration": observed, "conditions": []}
        if ready:
            obj["status"]["conditions"] = [{"type": "Ready", "status": ready, "reason": reason, "message": "m"}]
    return obj


@pytest.mark.parametrize(("obj", "expected"), [
    (_obj(1, None, None), "Progressing"),
    (_obj(2, 1, "True"), "Progressing"),
    (_obj(2, 2, "True"), "Healthy"),
    (_obj(2, 2, "False", "RevisionFailed"), "Degraded"),
    (_obj(2, 2, "Unknown", "Reconciling"), "Progressing"),
    (_obj(2, 2, "Unknown", "Paused"), "Suspended"),
])
def test_argocd_health_script(obj: dict[str, Any], expected: str) -> None:
    status, _ = _health(obj)
    assert status == expected


def test_argocd_configmap_carries_the_same_script() -> None:
    cm = yaml.safe_load((MANIFESTS / "argocd" / "argocd-cm-patch.yaml").read_text())
    script = cm["data"]["resource.customizations.health.serving.tfms.dev_TFModelService"]
    assert script.strip() == Path(MANIFESTS / "argocd" / "tfmodelservice-health.lua").read_text().strip()


def test_webhook_matches_the_handler_kopf_serves(rendered: list[dict[str, Any]]) -> None:
    """The static configuration points at the path kopf serves the validate handler on, fails
    closed, and only for TFModelService creates and updates."""
    from tfms.api import names
    from tfms.handlers import admission

    (config,) = _kind(rendered, "ValidatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert config["metadata"]["name"] == names.WEBHOOK_CONFIGURATION
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["clientConfig"]["service"]["path"] == f"/{names.WEBHOOK_ID}"
    assert hook["rules"] == [{"apiGroups": [names.GROUP], "apiVersions": [names.VERSION], "resources": [names.PLURAL],
                              "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}]
    registry = kopf.OperatorRegistry()
    admission.register_webhook(registry)
    assert [h.id for h in registry._webhooks.get_all_handlers()] == [names.WEBHOOK_ID]
    (deployment,) = _kind(rendered, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TFMS_WEBHOOK_PORT"] == "9443"
