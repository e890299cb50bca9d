"""TFModelServicePolicy guardrails: the checker, the CLI (`tfms validate --policy`), the reconciler,
the generated CRD, and credential-looking env values refused by validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, base_object
from tfms.api.crd import policy_crd
from tfms.api.defaults import Defaults
from tfms.api.guardrails import check_all, policy_errors
from tfms.api.validation import parse, validate
from tfms.cli.main import main
from tfms.reconcile.objects import reconcile_object

POLICY: dict[str, Any] = {
    "apiVersion": "serving.tfms.dev/v1alpha1",
    "kind": "TFModelServicePolicy",
    "metadata": {"name": "platform"},
    "spec": {
        "invokers": {"allowedDomains": ["example.com", "example-project.iam.gserviceaccount.com"],
                     "allowedMemberTypes": ["user", "group", "serviceAccount"]},
        "publicAllowed": False,
        "allowedProjects": ["example-project"],
        "allowedRegions": ["us-central1", "europe-west4"],
        "images": {"allowedRegistries": ["docker.io/tensorflow/serving", "us-docker.pkg.dev/example-project/"],
                   "pinning": "ExactTag"},
        "gpu": {"allowedTypes": ["nvidia-l4"], "maxInstances": 4},
        "maxInstances": 20,
        "serviceAccount": {"required": True, "allowed": ["@example-project.iam.gserviceaccount.com"]},
    },
}
SA = "fraud-sa@example-project.iam.gserviceaccount.com"
GPU = {"image": "tensorflow/serving:2.19.0-gpu", "gpu": {"type": "nvidia-l4"}, "resources": {"cpu": "4",
                                                                                              "memory": "16Gi"}}


def _ok(**spec: Any) -> dict[str, Any]:
    """Compliant with POLICY (the default maxInstances, 100, is above its ceiling)."""
    return base_object(**{"serviceAccount": SA, "scaling": {"maxInstances": 10}, **spec})


# (id, spec overrides, expected violations as (path, rule))
VIOLATIONS = [
    ("public", {"access": {"public": True}}, [("spec.access.public", "platform:public-allowed")]),
    ("foreign domain", {"access": {"invokers": ["user:eve@evil.example.org"]}},
     [("spec.access.invokers[0]", "platform:invoker-domain")]),
    ("member type", {"access": {"invokers": ["domain:example.com"]}},
     [("spec.access.invokers[0]", "platform:invoker-member-type")]),
    ("workload identity principal has no domain", {"access": {"invokers": [
        "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s"]}},
     [("spec.access.invokers[0]", "platform:invoker-domain"), ("spec.access.invokers[0]",
                                                               "platform:invoker-member-type")]),
    ("project", {"project": "other-project"}, [("spec.project", "platform:allowed-projects")]),
    ("region", {"region": "asia-east1"}, [("spec.region", "platform:allowed-regions")]),
    ("registry", {"runtime": {"image": "ghcr.io/someone/serving:2.19.0"}},
     [("spec.runtime.image", "platform:image-registry")]),
    ("floating tag", {"runtime": {"image": "tensorflow/serving:2.19"}},
     [("spec.runtime.image", "platform:image-pinning")]),
    ("gpu ceiling", {"runtime": GPU, "scaling": {"maxInstances": 5, "cpuAlwaysAllocated": True}},
     [("spec.scaling.maxInstances", "platform:gpu-max-instances")]),
    ("max instances", {"scaling": {"maxInstances": 50}}, [("spec.scaling.maxInstances", "platform:max-instances")]),
    ("default service account", {"serviceAccount": "123456789-compute@developer.gserviceaccount.com"},
     [("spec.serviceAccount", "platform:service-account-allowed"),
      ("spec.serviceAccount", "platform:service-account-required")]),
]


@pytest.mark.parametrize(("spec", "expected"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_checker_names_policy_rule_and_field(spec: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    obj = _ok(**spec)
    assert validate(obj) == []
    violations = check_all([POLICY], parse(obj))
    assert [(v.path, v.rule) for v in violations] == sorted(expected)
    assert all(v.message.startswith("TFModelServicePolicy platform: ") for v in violations)


def test_compliant_spec_and_out_of_scope_namespace_pass() -> None:
    assert check_all([POLICY], parse(_ok(access={"invokers": ["group:ml@example.com", f"serviceAccount:{SA}"]},
                                         runtime=GPU, scaling={"maxInstances": 4, "cpuAlwaysAllocated": True}))) == []
    scoped = copy.deepcopy(POLICY)
    scoped["spec"]["namespaces"] = ["payments"]
    assert check_all([scoped], parse(_ok(access={"public": True}))) == []  # object lives in "ml"


def test_digest_pinning() -> None:
    digest = copy.deepcopy(POLICY)
    digest["spec"]["images"]["pinning"] = "Digest"
    tagged = parse(_ok())
    assert [(v.path, v.rule) for v in check_all([digest], tagged)] == [("spec.runtime.image", "platform:image-pinning")]
    pinned = parse(_ok(runtime={"image": "tensorflow/serving@sha256:" + "a" * 64}))
    assert check_all([digest], pinned) == []


def _write(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.mark.parametrize(("spec", "expected"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_cli_validate_with_policy_refuses_with_rule_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          spec: dict[str, Any],
                                                          expected: list[tuple[str, str]]) -> None:
    policy = _write(tmp_path / "policy.yaml", POLICY)
    manifest = _write(tmp_path / "svc.yaml", _ok(**spec))
    assert main(["validate", str(manifest)]) == 0  # valid without the guardrails
    capsys.readouterr()
    assert main(["validate", "--policy", str(policy), str(manifest)]) == 1
    out = capsys.readouterr().out
    for path, rule in expected:
        assert f"{path}: TFModelServicePolicy platform:" in out and f"[{rule}]" in out


def test_cli_refuses_an_invalid_policy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = copy.deepcopy(POLICY)
    bad["spec"]["images"]["pinning"] = "Whatever"
    policy = _write(tmp_path / "policy.yaml", bad)
    manifest = _write(tmp_path / "svc.yaml", _ok())
    assert main(["validate", "--policy", str(policy), str(manifest)]) == 2
    assert "spec.images.pinning" in capsys.readouterr().err
    assert [e.path for e in policy_errors(bad)] == ["spec.images.pinning"]


@pytest.mark.parametrize(("spec", "expected"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
async def test_reconciler_refuses_before_any_call(spec: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    class NoCalls:
        async def get_service(self, name: str) -> None:
            raise AssertionError("a policy violation must stop the pass before Cloud Run")

        async def create_service(self, parent: str, service_id: str, body: Any) -> str:
            raise AssertionError("no writes")

        async def update_service(self, name: str, body: Any, etag: str = "") -> str:
            raise AssertionError("no writes")

    body = _ok(**spec)
    body["metadata"]["generation"] = 1
    outcome = await reconcile_object(NoCalls(), body, Defaults(), now="t0", policies=[POLICY])
    assert outcome.permanent and outcome.done
    for path, rule in expected:
        assert f"{path}: TFModelServicePolicy platform:" in outcome.permanent and f"[{rule}]" in outcome.permanent
    assert [e.reason for e in outcome.events] == ["InvalidSpec"]


def test_policy_crd_file_matches_schema() -> None:
    committed = yaml.safe_load((REPO / "crds" / "tfmodelservicepolicy.yaml").read_text())
    assert committed == policy_crd(), "regenerate with: tfms crd --policy > crds/tfmodelservicepolicy.yaml"
    assert committed["spec"]["scope"] == "Cluster"
    kustomization = yaml.safe_load((REPO / "crds" / "kustomization.yaml").read_text())
    assert "tfmodelservicepolicy.yaml" in kustomization["resources"]
    assert policy_errors(POLICY) == []


KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
# (id, env entry, expected (path, rule)); values are the published shapes of each credential.
CREDENTIALS = [
    ("pem private key", {"name": "TLS_MATERIAL", "value": KEY}, "env-private-key"),
    ("service account key json", {"name": "GOOGLE_CREDS", "value": '{"type": "service_account", "private_key_id": '
                                  '"abc"}'}, "env-service-account-key"),
    ("google api key", {"name": "MAPS", "value": "AIzaSyA1234567890abcdefghijklmnopqrstuv"}, "env-gcp-api-key"),
    ("aws access key id", {"name": "AWS_ID", "value": "AKIAIOSFODNN7EXAMPLE"}, "env-aws-access-key"),
    ("github token", {"name": "GH", "value": "ghp_" + "a1B2" * 9}, "env-token"),
    ("url with password", {"name": "DATABASE_URL", "value": "postgres://app:hunter22@db:5432/app"},
     "env-url-password"),
    ("password assignment", {"name": "OPTS", "value": "user=app password=hunter22"}, "env-password-assignment"),
    ("credential name", {"name": "DB_PASSWORD", "value": "hunter22"}, "env-plain-credential"),
]


@pytest.mark.parametrize(("env", "rule"), [c[1:] for c in CREDENTIALS], ids=[c[0] for c in CREDENTIALS])
def test_credential_looking_env_values_are_refused(env: dict[str, str], rule: str) -> None:
    errors = validate(base_object(runtime={"env": [env]}))
    assert [(e.path, e.rule) for e in errors] == [("spec.runtime.env[0].value", rule)]
    assert "secretKeyRef" in errors[0].message


@pytest.mark.parametrize("env", [
    {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"},
    {"name": "MODEL_URL", "value": "https://example.com/models/fraud"},
    {"name": "DB_PASSWORD", "secretKeyRef": {"secret": "db-password", "version": "3"}},
    {"name": "API_TOKEN", "secretKeyRef": {"secret": "projects/other-project/secrets/token"}},
])
def test_ordinary_values_and_secret_refs_pass(env: dict[str, Any]) -> None:
    assert validate(base_object(runtime={"env": [env]})) == []
