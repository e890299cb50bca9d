"""The validating webhook as served: the real tfms operator (kopf) with its webhook server on
loopback HTTPS, the policies in kopf's index fed by a real API server, and AdmissionReview
requests POSTed to the served endpoint the way the API server sends them.

The tests/kube API server cannot call webhooks itself (its webhook admission plugins need
admissionregistration.k8s.io, which it does not serve), so the test plays the API server's part
of the exchange: it asks the real server for each object as admission would see it (a dry-run
create, so schema defaults and metadata are the server's), wraps it in an ``admission.k8s.io/v1``
AdmissionReview, POSTs it to the path manifests/operator/webhook.yaml configures, and verifies the
server's certificate against the CA the operator dumps, as the API server does with ``caBundle``.

Everything is configured the production way: TFMS_WEBHOOK_* variables read by
``configure_admission`` in the operator's startup handler, the webhook handler registered when
``tfms.handlers.admission`` is imported with TFMS_WEBHOOK_PORT set, and TLS from certificate files
(manifests/operator mounts them from a Secret).
"""

from __future__ import annotations

import copy
import datetime
import http.client
import importlib
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.api.test_guardrails import POLICY, SA
from tests.conftest import base_object
from tests.kube.cluster import REPO, KopfThread, KubeCluster, KubeError, free_ports
from tfms.api import names
from tfms.emulator import Emulator

CRD = REPO / "crds" / "tfmodelservice.yaml"
POLICY_CRD = REPO / "crds" / "tfmodelservicepolicy.yaml"
WEBHOOK_MANIFEST = REPO / "manifests" / "operator" / "webhook.yaml"
NAMESPACE = "admission-served"
API = f"/apis/{names.GROUP}/{names.VERSION}"
TFMS = f"{names.PLURAL}.{names.GROUP}"  # not `tfms`: see test_kubectl_get_tfms_by_name_with_both_crds
SETTINGS = {
    "TFMS_RESYNC_SECONDS": "1", "TFMS_POLL_SECONDS": "0.2", "TFMS_RETRY_INITIAL_SECONDS": "0.2",
    "TFMS_RETRY_MAX_SECONDS": "2", "TFMS_SNAPSHOT_TTL_SECONDS": "0.5",
    "TFMS_MODEL_CHECK": "off",  # the specs here name fake gs:// buckets
}


def _manifest_webhook() -> dict[str, Any]:
    """The one webhook of the ValidatingWebhookConfiguration in manifests/operator/webhook.yaml."""
    docs = [d for d in yaml.safe_load_all(WEBHOOK_MANIFEST.read_text()) if d]
    (config,) = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
    (webhook,) = config["webhooks"]
    return dict(webhook)


WEBHOOK = _manifest_webhook()
PATH = str(WEBHOOK["clientConfig"]["service"]["path"])


def _self_signed(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A self-signed serving certificate (its own CA, as kopf's self-signing makes) for `hosts`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    keyfile.chmod(0o600)
    return certfile, keyfile


@dataclass
class Reply:
    status: int
    reason: str
    body: dict[str, Any] | None

    @property
    def response(self) -> dict[str, Any]:
        assert self.status == 200 and self.body is not None, (self.status, self.reason, self.body)
        return dict(self.body["response"])

    @property
    def message(self) -> str:
        return str(self.response.get("status", {}).get("message", ""))


@dataclass
class Served:
    """The running operator and how the API server would reach its webhook."""

    kube: KubeCluster
    thread: KopfThread
    port: int
    cadump: Path
    certfile: Path

    def post(self, payload: bytes, path: str = PATH, timeout: float = float(WEBHOOK["timeoutSeconds"])) -> Reply:
        """One HTTPS POST, the server's certificate verified against the dumped CA bundle and
        checked for 127.0.0.1 (an IP SAN), within the manifest's timeoutSeconds."""
        context = ssl.create_default_context(cafile=str(self.cadump))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=timeout)
        try:
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json",
                                                              "Accept": "application/json"})
            res = conn.getresponse()
            data = res.read()
            body = json.loads(data) if res.getheader("Content-Type", "").startswith("application/json") else None
            return Reply(res.status, res.reason, body)
        finally:
            conn.close()

    def review(self, obj: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None) -> Reply:
        request = _review(obj, operation, old)
        reply = self.post(json.dumps(request).encode())
        response = reply.response
        assert reply.body is not None
        # The API server rejects a response that does not echo its envelope and uid.
        assert (reply.body["apiVersion"], reply.body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
        assert response["uid"] == request["request"]["uid"]
        return reply

    def as_admitted(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as the API server hands it to validating admission: after its schema
        defaulting and with its metadata (a dry-run create, which stores nothing)."""
        namespace = obj["metadata"]["namespace"]
        status, body = self.kube.request("POST", f"{API}/namespaces/{namespace}/{names.PLURAL}?dryRun=All", obj,
                                         content_type="application/json")
        assert status == 201, (status, body)
        assert body["metadata"].get("uid") and body["metadata"].get("creationTimestamp")
        return dict(body)


def _review(obj: dict[str, Any], operation: str, old: dict[str, Any] | None) -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview, as the API server builds it for a TFModelService."""
    gvk = {"group": names.GROUP, "version": names.VERSION, "kind": names.KIND}
    gvr = {"group": names.GROUP, "version": names.VERSION, "resource": names.PLURAL}
    options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}[operation]
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind,
                        "fieldManager": "kubectl-client-side-apply"},
        },
    }


def _ok(name: str, **spec: Any) -> dict[str, Any]:
    """Compliant with POLICY (tests/api/test_guardrails.py), in this module's namespace."""
    obj = base_object(**{"serviceAccount": SA, "scaling": {"maxInstances": 10}, **spec})
    obj["metadata"] = {"name": name, "namespace": NAMESPACE}
    return obj


@pytest.fixture(scope="module")
def served(kube: KubeCluster, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The operator as `tfms operator` runs it with TFMS_WEBHOOK_PORT set, the policy applied."""
    tls = tmp_path_factory.mktemp("webhook-tls")
    certfile, keyfile = _self_signed(tls, ["127.0.0.1", "localhost"])
    (port,) = free_ports(1)
    env = {**SETTINGS, "TFMS_CLOUDRUN_ENDPOINT": emulator.address, "TFMS_WEBHOOK_PORT": str(port),
           "TFMS_WEBHOOK_ADDR": "127.0.0.1", "TFMS_WEBHOOK_HOST": "127.0.0.1", "TFMS_WEBHOOK_CERT": str(certfile),
           "TFMS_WEBHOOK_KEY": str(keyfile), "TFMS_WEBHOOK_CADUMP": str(tls / "ca.pem")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # The handlers register at import into kopf's default registry (the webhook only when
    # TFMS_WEBHOOK_PORT is set, the resync interval as TFMS_RESYNC_SECONDS says then). Import them
    # now, into a registry of their own: never at collection, never into the default registry
    # that other modules' operators (without a webhook server) run.
    registry, previous = kopf.OperatorRegistry(), kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        for module in ("tfms.handlers.admission", "tfms.handlers.operator"):
            if module in sys.modules:
                importlib.reload(sys.modules[module])
            else:
                importlib.import_module(module)
    finally:
        kopf.set_default_registry(previous)
    try:
        kube.apply_crd(CRD)
        kube.apply_crd(POLICY_CRD)
        if kube.kubectl("get", "namespace", NAMESPACE).returncode != 0:
            kube.kubectl("create", "namespace", NAMESPACE, check=True)
        with kube.operator(registry) as thread:
            running = Served(kube, thread, port, tls / "ca.pem", certfile)
            probe = json.dumps(_review(_ok("probe"), "CREATE", None)).encode()

            def answering() -> bool:
                try:
                    return running.post(probe, timeout=2).status == 200
                except (OSError, ssl.SSLError):
                    return False

            kube.wait_for("the webhook answering over HTTPS", answering, timeout=30)
            kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(POLICY), check=True)
            public = running.as_admitted(_ok("probe-public", access={"public": True}))
            kube.wait_for("the policy in the operator's index",
                          lambda: running.review(public).response["allowed"] is False, timeout=30)
            yield running
            # Released by this operator's finalizer, so later modules' operators never see them.
            kube.kubectl("delete", TFMS, "--all", "-n", NAMESPACE, "--timeout=30s", check=True)
    finally:
        _remove_policy_crd(kube)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _remove_policy_crd(kube: KubeCluster) -> None:
    """Other modules share the session's cluster and run `kubectl get tfms NAME`, which the policy
    CRD breaks (see below): delete it, wait until discovery forgets it, drop kubectl's cache."""
    kube.kubectl("delete", "crd", names.POLICY_CRD_NAME, "--ignore-not-found", "--timeout=30s")

    def forgotten() -> bool:
        status, found = kube.request("GET", API)
        return status == 200 and names.POLICY_PLURAL not in {r["name"] for r in found.get("resources", [])}

    kube.wait_for("the policy CRD gone from discovery", forgotten, timeout=30)
    shutil.rmtree(kube.workdir / "kubectl-cache", ignore_errors=True)


def test_manifest_points_at_the_served_path_and_fails_closed_with_a_timeout() -> None:
    assert f"/{names.WEBHOOK_ID}" == PATH  # kopf serves each handler at /{handler id}
    assert WEBHOOK["name"] == names.WEBHOOK_ID
    assert WEBHOOK["failurePolicy"] == "Fail"
    assert isinstance(WEBHOOK["timeoutSeconds"], int) and 1 <= WEBHOOK["timeoutSeconds"] <= 30
    assert WEBHOOK["admissionReviewVersions"] == ["v1"] and WEBHOOK["sideEffects"] == "None"
    (rule,) = WEBHOOK["rules"]
    assert rule["apiGroups"] == [names.GROUP] and rule["apiVersions"] == [names.VERSION]
    assert rule["resources"] == [names.PLURAL]  # not tfmodelservices/status
    assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]


def test_served_over_tls_with_the_dumped_ca(served: Served) -> None:
    # What the API server gets as caBundle is the serving certificate's own CA (here: itself).
    assert served.cadump.read_bytes() == served.certfile.read_bytes()
    wrong = ssl.create_default_context()  # the system CAs do not trust it: TLS is really verified
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=wrong, timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("POST", PATH, body=b"{}")
    conn.close()
    plain = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)  # no plaintext fallback
    try:
        plain.request("POST", PATH, body=b"{}")
        with pytest.raises((http.client.HTTPException, OSError)):
            plain.getresponse()
    finally:
        plain.close()


def test_the_manifest_path_is_what_selects_the_handler(served: Served) -> None:
    """kopf answers POSTs to any path and runs only the handler whose id the path names: the
    manifest's path (asserted above) reaches the check, any other path admits everything."""
    public = served.as_admitted(_ok("path-check", access={"public": True}))
    assert served.review(public).response["allowed"] is False
    request = json.dumps(_review(public, "CREATE", None)).encode()
    assert served.post(request, path="/validate.somewhere-else").response["allowed"] is True


def test_compliant_spec_is_allowed(served: Served) -> None:
    reply = served.review(served.as_admitted(_ok("compliant", access={"invokers": ["group:ml@example.com"]})))
    assert reply.response["allowed"] is True, reply.response
    assert "status" not in reply.response


@pytest.mark.parametrize(("spec", "path", "rule"), [
    ({"access": {"public": True}}, "spec.access.public", "platform:public-allowed"),
    ({"runtime": {"image": "ghcr.io/someone/serving:2.19.0"}}, "spec.runtime.image", "platform:image-registry"),
    ({"runtime": {"image": "tensorflow/serving:2.19"}}, "spec.runtime.image", "platform:image-pinning"),
    ({"project": "other-project"}, "spec.project", "platform:allowed-projects"),
], ids=["public", "registry", "unpinned tag", "project"])
def test_violations_are_refused_naming_policy_rule_and_field(served: Served, spec: dict[str, Any], path: str,
                                                             rule: str) -> None:
    obj = served.as_admitted(_ok(f"violating-{secrets.token_hex(3)}", **spec))
    reply = served.review(obj)
    response = reply.response
    assert response["allowed"] is False, response
    assert response["status"]["code"] == 422
    message = reply.message
    assert f"{path}: TFModelServicePolicy platform:" in message and f"[{rule}]" in message, message
    assert message.startswith("1 invalid field(s): "), message
    # The same object, changed on UPDATE into the violation, is refused the same way.
    compliant = served.as_admitted(_ok(obj["metadata"]["name"]))
    update = served.review(obj, "UPDATE", old=compliant)
    assert update.response["allowed"] is False and f"[{rule}]" in update.message


def test_update_that_keeps_the_spec_is_allowed_even_when_violating(served: Served) -> None:
    """kopf removing its finalizer from an object a later policy forbids: never wedged."""
    old = served.as_admitted(_ok("finalized", access={"public": True}))
    old["metadata"]["finalizers"] = ["tfms.dev/finalizer"]
    old["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    assert served.review(new, "UPDATE", old=old).response["allowed"] is True
    annotated = copy.deepcopy(old)  # an annotation patch on a live object
    del annotated["metadata"]["deletionTimestamp"], old["metadata"]["deletionTimestamp"]
    annotated["metadata"]["annotations"] = {"tfms.dev/rollout-action": "promote"}
    assert served.review(annotated, "UPDATE", old=old).response["allowed"] is True
    assert served.review(annotated, "CREATE").response["allowed"] is False  # the spec itself still violates


def test_schema_and_cloud_run_rules_are_refused_too(served: Served) -> None:
    obj = served.as_admitted(_ok("bad-traffic"))
    obj["spec"]["traffic"] = [{"percent": 10, "latestRevision": True}]
    reply = served.review(obj)
    assert reply.response["allowed"] is False
    assert "spec.traffic: percentages must sum to exactly 100 [traffic-sum]" in reply.message


def test_policy_changes_reach_the_webhook_through_the_index(served: Served) -> None:
    public = served.as_admitted(_ok("public-later", access={"public": True}))
    relaxed = copy.deepcopy(POLICY)
    relaxed["spec"]["publicAllowed"] = True
    served.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(relaxed), check=True)
    try:
        served.kube.wait_for("public allowed once the policy allows it",
                             lambda: served.review(public).response["allowed"] is True, timeout=20)
    finally:
        served.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(POLICY), check=True)
    served.kube.wait_for("public refused again", lambda: served.review(public).response["allowed"] is False,
                         timeout=20)


def _malformed() -> list[tuple[str, bytes, int, str]]:
    good = _review(_ok("malformed"), "CREATE", None)
    no_user = copy.deepcopy(good)
    del no_user["request"]["userInfo"]
    no_object = copy.deepcopy(good)
    no_object["request"]["object"] = None
    other = copy.deepcopy(good)
    other["request"]["resource"] = {"group": "", "version": "v1", "resource": "pods"}
    return [
        ("not json", b"{this is not json", 400, "Expecting property name"),
        ("no user info", json.dumps(no_user).encode(), 400, "User info is missing"),
        ("no object", json.dumps(no_object).encode(), 400, "Either old or new object is missing"),
        ("another resource", json.dumps(other).encode(), 404, "has no handlers"),
    ]


@pytest.mark.parametrize(("payload", "status", "reason"), [m[1:] for m in _malformed()],
                         ids=[m[0] for m in _malformed()])
def test_malformed_reviews_get_a_clear_error_and_the_operator_keeps_serving(
        served: Served, payload: bytes, status: int, reason: str) -> None:
    reply = served.post(payload)
    assert (reply.status, reason in reply.reason) == (status, True), (reply.status, reply.reason)
    assert served.thread.is_alive() and served.thread.error is None
    assert served.review(served.as_admitted(_ok("after-malformed"))).response["allowed"] is True


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{}", ".request is missing"),
    (b"[]", "expected a JSON object"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u"}}',
     ".request.operation is missing"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"uid": "u", "operation": "CREATE", "resource": {"group": names.GROUP}}}).encode(),
     ".request.resource needs group, version and resource"),
], ids=["empty object", "array", "no resource", "partial resource"])
def test_no_admission_review_at_all_is_a_bad_request(served: Served, payload: bytes, reason: str) -> None:
    """kopf alone would answer these with a bare 500 (it reads request.resource unchecked); never
    `allowed`, and with failurePolicy Fail the API server refuses the write either way."""
    reply = served.post(payload)
    assert (reply.status, reply.reason) == (400, f"not an AdmissionReview: {reason}"), reply
    assert served.thread.is_alive() and served.thread.error is None
    assert served.review(served.as_admitted(_ok("after-empty"))).response["allowed"] is True


def test_operator_still_reconciles_after_all_of_it(served: Served, emulator: Emulator) -> None:
    """The webhook shares kopf's loop with reconciliation: a compliant object still gets Ready,
    and a violating one (the API server here cannot call the webhook) is refused by the reconciler."""
    kube = served.kube
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(_ok("reconciled")), check=True)
    public = _ok("reconciled-public", access={"public": True})
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(public), check=True)

    def conditions(name: str) -> dict[str, dict[str, Any]]:
        out = kube.kubectl("get", TFMS, name, "-n", NAMESPACE, "-o", "json", check=True).stdout
        return {c["type"]: c for c in json.loads(out).get("status", {}).get("conditions", [])}

    try:
        kube.wait_for("compliant object Ready",
                      lambda: conditions("reconciled").get("Ready", {}).get("status") == "True", timeout=30)
        kube.wait_for("violating object refused by the reconciler",
                      lambda: conditions("reconciled-public").get("Ready", {}).get("status") == "False", timeout=30)
    except KubeError as err:
        raise AssertionError(f"{conditions('reconciled')} {conditions('reconciled-public')}") from err
    assert "platform:public-allowed" in json.dumps(conditions("reconciled-public"))
    assert served.thread.is_alive() and served.thread.error is None


def test_kubectl_get_tfms_by_name_with_both_crds(served: Served) -> None:
    served.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(_ok("by-short-name")), check=True)
    try:
        result = served.kube.kubectl("get", "tfms", "by-short-name", "-n", NAMESPACE, "-o", "name")
        assert result.returncode == 0, result.stderr
    finally:
        served.kube.kubectl("delete", TFMS, "by-short-name", "-n", NAMESPACE, "--wait=false")
