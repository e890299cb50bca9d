"""The real tfms operator (kopf) against a real Kubernetes API server and the Cloud Run emulator.

kubectl applies specs exactly as a user or a GitOps tool would; the API server validates them
with the CRD's schema and CEL rules; the operator reconciles them into the emulator and writes
status. Each test waits on a condition with a timeout, never on a sleep.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import kopf
import pytest
import yaml
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from tests.kube.cluster import REPO, KubeCluster, KubeError
from tests.kube.test_cluster import tfms
from tfms.emulator import Emulator

CRD = REPO / "crds" / "tfmodelservice.yaml"
WRITES = {"CreateService", "UpdateService", "DeleteService", "SetIamPolicy"}
SETTINGS = {
    "TFMS_RESYNC_SECONDS": "1", "TFMS_POLL_SECONDS": "0.2", "TFMS_RETRY_INITIAL_SECONDS": "0.2",
    "TFMS_RETRY_MAX_SECONDS": "2", "TFMS_SNAPSHOT_TTL_SECONDS": "0.5",
    "TFMS_MODEL_CHECK": "off",  # the specs here name fake gs:// buckets
}


class RunningOperator:
    """The operator process's life, so a test can stop it mid-work and start it again."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._running: Any = None

    def start(self) -> None:
        self._running = self._make()
        self._running.__enter__()

    def stop(self) -> None:
        if self._running is not None:
            running, self._running = self._running, None
            running.__exit__(None, None, None)


@pytest.fixture(scope="module")
def operator(kube: KubeCluster, emulator: Emulator) -> Iterator[RunningOperator]:
    """The tfms handlers, configured by TFMS_* variables, running against the stack."""
    saved = {k: os.environ.get(k) for k in [*SETTINGS, "TFMS_CLOUDRUN_ENDPOINT"]}
    os.environ.update(SETTINGS, TFMS_CLOUDRUN_ENDPOINT=emulator.address)
    kube.apply_crd(CRD)
    import tfms.handlers.operator as handlers

    importlib.reload(handlers)  # the resync interval is read when the handlers register
    registry = kopf.get_default_registry()

    running = RunningOperator(lambda: kube.operator(registry))
    try:
        running.start()
        yield running
        running.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _get(kube: KubeCluster, name: str, namespace: str = "default") -> dict[str, Any]:
    out = kube.kubectl("get", "tfms", name, "-n", namespace, "-o", "json", check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _apply(kube: KubeCluster, obj: dict[str, Any]) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=True)


def _ready(obj: dict[str, Any]) -> str:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == "Ready":
            return str(cond["status"])
    return ""


def _wait_ready(kube: KubeCluster, name: str, generation: int = 1, namespace: str = "default",
                timeout: float = 30) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        seen.update(_get(kube, name, namespace))
        status = seen.get("status", {})
        return _ready(seen) == "True" and status.get("observedGeneration") == generation

    kube.wait_for(f"{namespace}/{name} Ready at generation {generation}", check, timeout=timeout)
    return seen


def _writes(emulator: Emulator) -> int:
    return sum(1 for c in emulator.control.calls if c.method in WRITES)


def _events(kube: KubeCluster, name: str) -> list[dict[str, Any]]:
    _, body = kube.request("GET", "/api/v1/namespaces/default/events")
    return [e for e in body.get("items", []) if e.get("involvedObject", {}).get("name") == name]


def test_apply_to_ready_with_url_traffic_and_printer_columns(kube: KubeCluster, operator: Any,
                                                             emulator: Emulator) -> None:
    started = time.monotonic()
    _apply(kube, tfms("fraud-scorer", "default", traffic=[{"percent": 100, "tag": "stable"}]))
    obj = _wait_ready(kube, "fraud-scorer")
    elapsed = time.monotonic() - started
    status = obj["status"]
    assert status["url"].startswith("https://fraud-scorer-")
    assert status["latestReadyRevision"] == status["desiredRevision"]
    assert status["traffic"][0]["tag"] == "stable" and status["traffic"][0]["percent"] == 100
    assert status["traffic"][0]["url"].startswith("https://stable---fraud-scorer-")
    assert "tfms.dev/finalizer" in obj["metadata"]["finalizers"]
    assert "kopf" not in json.dumps(status)  # kopf's bookkeeping lives in annotations (B-034)
    table = kube.kubectl("get", "tfms", "-n", "default", check=True).stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "URL", "READY", "REVISION"]
    row = table[1].split()
    assert row[:4] == ["fraud-scorer", status["url"], "True", status["latestReadyRevision"]]
    print(f"\nseconds from kubectl apply to Ready: {elapsed:.2f}")


def test_api_server_refuses_invalid_specs_with_readable_messages(kube: KubeCluster, operator: Any) -> None:
    cases = [
        (tfms("bad-sum", "default", traffic=[{"percent": 60, "tag": "a"}, {"latestRevision": True, "percent": 30}]),
         "traffic percentages must sum to exactly 100"),
        (tfms("bad-image", "default", runtime={"image": "tensorflow/serving:latest"}),
         "the image must be pinned"),
        (tfms("bad-tags", "default", traffic=[{"percent": 50, "tag": "x"}, {"latestRevision": True, "percent": 50,
                                                                         "tag": "x"}]),
         "traffic tags must be unique"),
        (tfms("bad-prefix", "default", traffic=[{"revision": "green", "percent": 100}]),
         "pinned revisions of this service are named"),
        (tfms("bad-tag", "default", traffic=[{"percent": 100, "tag": "Canary"}]), "spec.traffic[0].tag"),
        (tfms("Bad-Name", "default"), "metadata.name"),
        (tfms("bad-gpu", "default", runtime={"gpu": {"type": "nvidia-l4"}}, scaling={"cpuAlwaysAllocated": False}),
         "a GPU needs CPU always allocated"),
    ]
    for obj, message in cases:
        result = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
        assert result.returncode != 0, obj["metadata"]["name"]
        assert message in result.stderr, result.stderr


def test_spec_change_makes_a_new_revision(kube: KubeCluster, operator: Any) -> None:
    before = _wait_ready(kube, "fraud-scorer")
    changed = tfms("fraud-scorer", "default", traffic=[{"percent": 100, "tag": "stable"}],
                   runtime={"image": "tensorflow/serving:2.19.0", "env": [{"name": "A", "value": "1"}]})
    _apply(kube, changed)
    after = _wait_ready(kube, "fraud-scorer", generation=2)
    assert after["status"]["latestReadyRevision"] != before["status"]["latestReadyRevision"]
    reasons = [e["reason"] for e in _events(kube, "fraud-scorer")]
    assert "RevisionCreated" in reasons and "Ready" in reasons


def test_converged_object_causes_no_writes(kube: KubeCluster, operator: Any, emulator: Emulator) -> None:
    """B-035: resyncs of a converged object make zero Cloud Run writes and zero status patches."""
    obj = _wait_ready(kube, "fraud-scorer", generation=2)
    version, writes = obj["metadata"]["resourceVersion"], _writes(emulator)
    def reads() -> int:  # a resync reads the shared ListServices snapshot (or a Get)
        return sum(1 for c in emulator.control.calls if c.method in ("GetService", "ListServices"))

    before = reads()
    kube.wait_for("three resyncs", lambda: reads() >= before + 3, timeout=20)
    assert _get(kube, "fraud-scorer")["metadata"]["resourceVersion"] == version
    assert _writes(emulator) == writes


def test_drift_in_cloud_run_is_corrected(kube: KubeCluster, operator: Any, emulator: Emulator) -> None:
    obj = _wait_ready(kube, "fraud-scorer", generation=2)
    channel = grpc.insecure_channel(emulator.address)
    client = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
    live = client.get_service(name=obj["status"]["service"])
    live.traffic[0].tag = "tampered"
    client.update_service(service=live)

    def corrected() -> bool:
        tags = [t.tag for t in client.get_service(name=obj["status"]["service"]).traffic]
        return tags == ["stable"]

    kube.wait_for("drift corrected", corrected, timeout=20)
    channel.close()
    assert "DriftCorrected" in [e["reason"] for e in _events(kube, "fraud-scorer")]


def test_delete_removes_the_service_and_releases_the_finalizer(kube: KubeCluster, operator: Any,
                                                                emulator: Emulator) -> None:
    _apply(kube, tfms("to-delete", "default"))
    obj = _wait_ready(kube, "to-delete")
    kube.kubectl("delete", "tfms", "to-delete", "-n", "default", "--wait=false", check=True)
    kube.wait_for("object gone", lambda: kube.kubectl("get", "tfms", "to-delete", "-n", "default").returncode != 0,
                  timeout=20)
    assert obj["status"]["service"] not in emulator.state.services


def test_abandon_keeps_the_service_without_ownership(kube: KubeCluster, operator: Any, emulator: Emulator) -> None:
    _apply(kube, tfms("to-abandon", "default", deletionPolicy="Abandon"))
    obj = _wait_ready(kube, "to-abandon")
    kube.kubectl("delete", "tfms", "to-abandon", "-n", "default", "--wait=false", check=True)
    kube.wait_for("object gone", lambda: kube.kubectl("get", "tfms", "to-abandon", "-n", "default").returncode != 0,
                  timeout=20)
    service = emulator.state.services[obj["status"]["service"]]
    labels = dict(service.labels) if hasattr(service, "labels") else service["labels"]
    assert "managed-by" not in labels and "tfms-uid" not in labels


def test_failed_delete_keeps_the_finalizer_until_it_succeeds(kube: KubeCluster, operator: Any,
                                                             emulator: Emulator) -> None:
    """B-037: permission denied on delete -> the object stays; once allowed, deletion completes."""
    _apply(kube, tfms("hard-delete", "default"))
    obj = _wait_ready(kube, "hard-delete")
    emulator.control.fail_next("DeleteService", grpc.StatusCode.PERMISSION_DENIED, count=2,
                               message="Permission 'run.services.delete' denied")
    kube.kubectl("delete", "tfms", "hard-delete", "-n", "default", "--wait=false", check=True)
    kube.wait_for("two refused deletes", lambda: sum(1 for c in emulator.control.calls
                                                      if c.method == "DeleteService") >= 2, timeout=20)
    assert obj["status"]["service"] in emulator.state.services or kube.kubectl(
        "get", "tfms", "hard-delete", "-n", "default").returncode == 0
    kube.wait_for("object gone", lambda: kube.kubectl("get", "tfms", "hard-delete", "-n", "default").returncode != 0,
                  timeout=30)
    assert obj["status"]["service"] not in emulator.state.services
    assert "DeleteFailed" in [e["reason"] for e in _events(kube, "hard-delete")]


def test_fifty_objects_at_once(kube: KubeCluster, operator: Any) -> None:
    objs = [tfms(f"bulk-{i:02d}", "default") for i in range(50)]
    started = time.monotonic()
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs), check=True)

    def all_ready() -> bool:
        out = json.loads(kube.kubectl("get", "tfms", "-n", "default", "-o", "json", check=True).stdout)
        ready = [o for o in out["items"] if o["metadata"]["name"].startswith("bulk-") and _ready(o) == "True"]
        return len(ready) == 50

    kube.wait_for("50 objects Ready", all_ready, timeout=120)
    print(f"\n50 objects from kubectl apply to all Ready: {time.monotonic() - started:.1f}s")


# ---- canary rollouts: restarts and kubectl-driven actions -------------------------------------

CANARY = {"strategy": "canary", "steps": [10, 50, 100], "interval": "2s"}


def _canary_weights(emulator: Emulator, service: str) -> list[int]:
    """The canary target's percent in every traffic write to `service`, in order."""
    out = []
    for call in emulator.control.calls:
        if call.method == "UpdateService" and call.request.service.name.endswith(f"/services/{service}"):
            out += [t.percent for t in call.request.service.traffic if t.tag == "canary"]
    return out


def _live_split(emulator: Emulator, service: str) -> dict[str, int]:
    channel = grpc.insecure_channel(emulator.address)
    try:
        client = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
        live = client.get_service(name=f"projects/example-project/locations/us-central1/services/{service}")
    finally:
        channel.close()
    return {t.revision.rsplit("/", 1)[-1]: t.percent for t in live.traffic_statuses if t.percent}


def _wait_status(kube: KubeCluster, name: str, what: str, check: Callable[[dict[str, Any]], bool],
                 timeout: float = 60) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.clear()
        seen.update(_get(kube, name))
        return check(seen.get("status", {}))

    try:
        kube.wait_for(f"{name}: {what}", done, timeout=timeout)
    except KubeError as exc:
        events = [(e["reason"], e.get("message", "")[:200]) for e in _events(kube, name) if e["reason"] != "Ready"]
        raise AssertionError(f"{name}: {what}: status {seen.get('status')}; events {events}") from exc
    return seen


def test_operator_restart_mid_rollout_resumes_from_cloud_run(kube: KubeCluster, operator: RunningOperator,
                                                            emulator: Emulator) -> None:
    _apply(kube, tfms("canary-restart", "default", rollout=CANARY))
    stable = _wait_ready(kube, "canary-restart")["status"]["latestReadyRevision"]
    v2 = tfms("canary-restart", "default", rollout=CANARY)
    v2["spec"]["model"]["version"] = 2
    _apply(kube, v2)
    _wait_status(kube, "canary-restart", "canary at 10%", lambda s: s.get("canaryPercent") == 10)
    operator.stop()
    try:
        # Lose everything the cluster knew: the rollout must be rebuilt from Cloud Run alone.
        kube.kubectl("patch", "tfms", "canary-restart", "-n", "default", "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": {"rollout": None, "stableRevision": None, "canaryRevision": None,
                                                  "canaryPercent": None, "traffic": None}}), check=True)
    finally:
        operator.start()
    obj = _wait_status(kube, "canary-restart", "rollout promoted",
                       lambda s: s.get("rollout", {}).get("phase") == "Succeeded" and _ready({"status": s}) == "True")
    status = obj["status"]
    assert status["stableRevision"] == status["latestReadyRevision"] == status["desiredRevision"] != stable
    # Never back to 0%, never a jump: the restart continued the rollout where Cloud Run said it was.
    weights = _canary_weights(emulator, "canary-restart")
    assert [w for i, w in enumerate(weights) if i == 0 or weights[i - 1] != w] == [0, 10, 50], weights
    assert set(_live_split(emulator, "canary-restart").values()) == {100}
    reasons = [e["reason"] for e in _events(kube, "canary-restart")]
    assert {"RolloutStarted", "RolloutStep", "Promoted"} <= set(reasons), reasons


def test_abort_promote_and_rollback_by_annotation(kube: KubeCluster, operator: RunningOperator,
                                                  emulator: Emulator) -> None:
    gated = {**CANARY, "manualGates": True}
    _apply(kube, tfms("canary-kubectl", "default", rollout=gated))
    v1 = _wait_ready(kube, "canary-kubectl")["status"]["latestReadyRevision"]
    v2 = tfms("canary-kubectl", "default", rollout=gated)
    v2["spec"]["model"]["version"] = 2
    _apply(kube, v2)
    _wait_status(kube, "canary-kubectl", "paused at the gate", lambda s: s.get("rollout", {}).get("phase") == "Paused")

    def annotate(action: str) -> None:
        kube.kubectl("annotate", "--overwrite", "tfms", "canary-kubectl", "-n", "default",
                     f"tfms.dev/rollout-action={action}", check=True)

    annotate("abort")
    obj = _wait_status(kube, "canary-kubectl", "aborted", lambda s: s.get("rollout", {}).get("phase") == "Aborted")
    assert "tfms.dev/rollout-action" not in obj["metadata"].get("annotations", {})  # applied once, then gone
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolloutAborted")
    assert _live_split(emulator, "canary-kubectl") == {v1: 100}

    # A new spec starts a new rollout; promote it on demand, then roll it back on demand.
    v3 = tfms("canary-kubectl", "default", rollout=gated)
    v3["spec"]["model"]["version"] = 3
    _apply(kube, v3)
    _wait_status(kube, "canary-kubectl", "v3 paused at the gate",
                 lambda s: s.get("rollout", {}).get("phase") == "Paused" and s.get("canaryRevision") == s.get(
                     "desiredRevision"))
    annotate("promote")
    promoted = _wait_status(kube, "canary-kubectl", "promoted",
                            lambda s: s.get("rollout", {}).get("phase") == "Succeeded")["status"]
    v3_revision = promoted["desiredRevision"]

    def templates() -> set[str]:
        return {c.request.service.template.revision for c in emulator.control.calls
                if c.method == "UpdateService" and c.request.service.name.endswith("/canary-kubectl")}

    before = templates()
    annotate("rollback")
    back = _wait_status(kube, "canary-kubectl", "rolled back",
                        lambda s: s.get("rollout", {}).get("phase") == "RolledBack")["status"]
    assert back["stableRevision"] == v1 != v3_revision
    assert _live_split(emulator, "canary-kubectl") == {v1: 100}
    # Rolling back moved traffic only: no new revision was asked for.
    assert templates() == before and v3_revision in before
    reasons = [e["reason"] for e in _events(kube, "canary-kubectl")]
    assert {"RolloutGate", "RolloutAborted", "Promoted", "RolledBack"} <= set(reasons), reasons
