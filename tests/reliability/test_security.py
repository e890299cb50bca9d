"""Security review in code (issue 10, item 6).

- RBAC grants exactly what the operator's handlers need, derived from the kopf registry the
  operator runs with (not a snapshot of the file): no secrets, no wildcards, no cluster-admin.
- The Deployment and the Dockerfile run as non-root, read-only root filesystem, no privilege
  escalation, all capabilities dropped.
- No credential or secret value reaches logs (JSON lines), events or status.
- The emulator and `tfms up` bind to loopback by default (the defaults in code and a real bind).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from tests.conftest import REPO, base_object
from tfms import logs
from tfms.api import names
from tfms.api.defaults import Defaults
from tfms.backends.cloudrun import CloudRun
from tfms.emulator import Emulator, EmulatorConfig
from tfms.reconcile.objects import Outcome, reconcile_object

RBAC = REPO / "manifests" / "operator" / "rbac.yaml"
DEPLOYMENT = REPO / "manifests" / "operator" / "deployment.yaml"
DOCKERFILE = REPO / "Dockerfile"


# -- RBAC -------------------------------------------------------------------------------------------------------
def _rules() -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc and doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for group in rule.get("apiGroups", []):
                    for resource in rule.get("resources", []):
                        granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def _needed() -> dict[tuple[str, str], set[str]]:
    """What the registered handlers make kopf do, per (apiGroup, resource)."""
    import tfms.handlers.admission
    import tfms.handlers.operator as handlers

    registry = kopf.get_default_registry()
    need: dict[tuple[str, str], set[str]] = {}

    def add(group: str, resource: str, *verbs: str) -> None:
        need.setdefault((group, resource), set()).update(verbs)

    plural_of = {names.GROUP: {handlers.RESOURCE[2]}}
    for indexer in registry._indexing.get_all_handlers():  # an index only reads: list + watch
        assert indexer.selector is not None and indexer.selector.group == names.GROUP
        for resource in (tfms.handlers.admission.POLICY_RESOURCE[2],):
            add(names.GROUP, resource, "get", "list", "watch")
    changing = registry._changing.get_all_handlers()
    spawning = registry._spawning.get_all_handlers()
    assert changing and spawning
    for handler in [*changing, *spawning]:
        assert handler.selector is not None and handler.selector.group == names.GROUP
        for plural in plural_of[names.GROUP]:
            # watched; patched for finalizers and kopf's progress annotations; status written
            add(names.GROUP, plural, "get", "list", "watch", "patch")
            add(names.GROUP, f"{plural}/status", "get", "patch")
    source = inspect.getsource(handlers)
    if re.search(r"kopf\.(event|info|warn|exception)\(", source):
        add("", "events", "create")
        add("events.k8s.io", "events", "create")
    # kopf itself: cluster-wide it observes namespaces and CRDs, and peering coordinates replicas
    # (the Deployment runs `--peering tfms` without a namespace: ClusterKopfPeering).
    add("", "namespaces", "list", "watch")
    add("apiextensions.k8s.io", "customresourcedefinitions", "list", "watch")
    add("kopf.dev", "clusterkopfpeerings", "get", "list", "watch", "patch")
    return need


def test_rbac_grants_exactly_what_the_handlers_use() -> None:
    granted, needed = _rules(), _needed()
    assert granted == needed, {"extra": {k: granted.get(k, set()) - v for k, v in needed.items()} | {
        k: v for k, v in granted.items() if k not in needed}, "missing": {k: v - granted.get(k, set())
                                                                          for k, v in needed.items()}}


def test_rbac_has_no_secrets_wildcards_or_cluster_admin() -> None:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    for doc in docs:
        for rule in doc.get("rules", []):
            assert "*" not in rule.get("verbs", []) and "*" not in rule.get("resources", [])
            assert "*" not in rule.get("apiGroups", [])
            assert not {"secrets", "configmaps", "pods/exec", "serviceaccounts/token"} & set(rule["resources"])
            assert not {"escalate", "bind", "impersonate", "delete", "deletecollection"} & set(rule["verbs"])
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert doc["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")
    # the webhook TLS secret is mounted by the kubelet, not read through the API
    assert "secretName: tfms-operator-webhook-tls" in DEPLOYMENT.read_text()


# -- Deployment and image ---------------------------------------------------------------------------------
def test_deployment_runs_unprivileged() -> None:
    doc = next(d for d in yaml.safe_load_all(DEPLOYMENT.read_text()) if d and d["kind"] == "Deployment")
    pod = doc["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("hostNetwork", False) is False and pod.get("hostPID", False) is False
    assert pod.get("automountServiceAccountToken", True) is True  # kopf needs its token
    for container in pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add")
        assert ctx.get("privileged", False) is False
        for env in container.get("env", []):
            if re.search(r"KEY|TOKEN|SECRET|PASSWORD", env["name"]) and "value" in env:
                assert env["value"].startswith("/"), env  # a path to a mounted file, never the credential
        assert not container["image"].endswith(":latest")


def test_dockerfile_runs_as_non_root_and_pinned() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip()
             and not line.strip().startswith("#")]
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for line in lines:
        if line.upper().startswith("FROM "):
            image = line.split()[1]
            assert ":" in image and not image.endswith(":latest"), line
    assert "tensorflow" not in DOCKERFILE.read_text().lower().replace("no tensorflow", "")


# -- no secret in logs, events or status -------------------------------------------------------------------
SECRET_VALUES = ["hunter2-Pa55w0rd-Q7", "8675309123", "AIzaSyA1234567890abcdefghijklmnopqrstuv",
                 "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "postgres://app:s3cr3tPW@db:5432/x",
                 "-----BEGIN PRIVATE KEY-----MIIEv"]


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The operator's own JSON log handler (tfms.logs), at DEBUG, into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.CloudLoggingFormatter())
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(saved)


def _obj(env: list[dict[str, Any]], generation: int = 1) -> dict[str, Any]:
    obj = base_object(runtime={"image": "tensorflow/serving:2.19.0", "env": env},
                      access={"invokers": ["serviceAccount:app@example-project.iam.gserviceaccount.com"]})
    obj["metadata"].update(generation=generation, uid="5ec2e7a0-0000-4000-8000-000000000002")
    return obj


async def _until_done(api: CloudRun, obj: dict[str, Any]) -> tuple[Outcome, list[str]]:
    events: list[str] = []
    async with asyncio.timeout(20):
        while True:
            outcome = await reconcile_object(api, obj, Defaults(), now="2025-01-01T00:00:00Z")
            obj["status"] = outcome.status
            events += [f"{e.type} {e.reason} {e.message}" for e in outcome.events]
            if outcome.done or outcome.permanent:
                return outcome, events
            await asyncio.sleep(0.02)  # the operator's poll interval, scaled down


async def test_no_secret_value_in_logs_events_or_status(api: CloudRun, emulator: Emulator,
                                                        json_logs: io.StringIO) -> None:
    # A valid service whose credential comes from Secret Manager: reconciled to Ready.
    good = _obj([{"name": "DB_PASSWORD", "secretKeyRef": {"secret": "db-password", "version": "3"}},
                 {"name": "LOG_LEVEL", "value": "info"}])
    ready, ready_events = await _until_done(api, good)
    assert ready.ready, ready.status
    live = await api.get_service(ready.status["service"])
    assert live is not None
    env = live["template"]["containers"][0]["env"]
    assert {"name": "DB_PASSWORD", "valueSource": {"secretKeyRef": {"secret": "db-password", "version": "3"}}} in env

    # Then plain credential values, each of which must be refused without being repeated anywhere.
    bad = _obj([{"name": "DB_PASSWORD", "value": SECRET_VALUES[0]},
                {"name": "PIN_CODE", "value": int(SECRET_VALUES[1])},  # a numeric one: a schema-type error
                {"name": "MAPS", "value": SECRET_VALUES[2]},
                {"name": "GH", "value": SECRET_VALUES[3]},
                {"name": "DATABASE_URL", "value": SECRET_VALUES[4]},
                {"name": "TLS", "value": SECRET_VALUES[5] + "A" * 40000}], generation=2)
    bad["status"] = ready.status
    refused, refused_events = await _until_done(api, bad)
    assert refused.permanent and not refused.ready
    ready_cond = next(c for c in refused.status["conditions"] if c["type"] == "Ready")
    assert ready_cond["reason"] == "InvalidSpec"
    for index in range(6):  # every refusal names its field
        assert f"spec.runtime.env[{index}].value" in ready_cond["message"], ready_cond["message"]

    recorded = "\n".join([json_logs.getvalue(), json.dumps(ready.status), json.dumps(refused.status),
                          *ready_events, *refused_events])
    assert json_logs.getvalue(), "nothing was logged: the check would be vacuous"
    for secret in SECRET_VALUES:
        assert secret not in recorded, f"{secret!r} leaked"
    # Cloud Run never received the refused values either.
    sent = json.dumps([str(c.request) for c in emulator.control.calls])
    for secret in SECRET_VALUES:
        assert secret not in sent


def test_cli_validate_does_not_echo_secret_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tfms.cli.main import main

    obj = _obj([{"name": "API_TOKEN", "value": SECRET_VALUES[0]}, {"name": "N", "value": int(SECRET_VALUES[1])}])
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(obj))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr()
    assert "spec.runtime.env[0].value" in out.out and "spec.runtime.env[1].value" in out.out
    for secret in SECRET_VALUES[:2]:
        assert secret not in out.out + out.err


# -- loopback by default -----------------------------------------------------------------------------------
def _default(fn: Any, name: str) -> Any:
    return inspect.signature(fn).parameters[name].default


def test_loopback_defaults_in_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from tfms.cli import main as cli

    monkeypatch.delenv("TFMS_EMULATOR_HOST", raising=False)
    assert _default(Emulator.start, "host") == "127.0.0.1"
    parser = cli.build_parser()
    # --host unset and TFMS_EMULATOR_HOST unset: what `tfms emulator` and `tfms up` listen on.
    assert cli._host(parser.parse_args(["emulator"])) == "127.0.0.1"
    assert cli._host(parser.parse_args(["up", "x.yaml"])) == "127.0.0.1"


def test_emulator_really_binds_loopback_only() -> None:
    emu = Emulator(EmulatorConfig())
    address = emu.start(rest_port=0)
    try:
        host, port = address.rsplit(":", 1)
        assert host in ("127.0.0.1", "localhost")
        rest_host, rest_port = emu.rest_address.rsplit(":", 1)
        assert rest_host in ("127.0.0.1", "localhost")
        for p in (int(port), int(rest_port)):
            with socket.create_connection(("127.0.0.1", p), timeout=2):
                pass  # reachable on loopback
            outside = _non_loopback_ip()
            if outside is not None:
                with pytest.raises(OSError), socket.create_connection((outside, p), timeout=2):
                    pass  # not on any other interface
    finally:
        emu.stop()


def _non_loopback_ip() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        except OSError:
            return None
        ip = str(s.getsockname()[0])
    return None if ip.startswith("127.") else ip
