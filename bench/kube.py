"""The operator benchmarks: kopf + a loopback Kubernetes API server + the emulator.

Convergence: N TFModelServices created through the API server, timed until every one says
Ready. Then the operator is restarted on the converged objects, which gives its footprint
(RSS with N objects, start to first Cloud Run call, tensorflow absent) and one resync pass
(the resume), followed by one timer resync: the Cloud Run calls each cost, per service. The
restart is done twice, with the shared ListServices snapshot on and off, side by side.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    READS,
    REPO,
    WRITES,
    EmulatorProcess,
    child_env,
    log,
    mapped_files,
    memory_mib,
    spec_object,
    stop_process,
)
from tfms.api import names

GROUP, VERSION, PLURAL = "serving.tfms.dev", "v1alpha1", "tfmodelservices"
# Every CRD the operator watches (an unresolved one holds kopf's indexes, and with them handlers).
CRDS = sorted(p for p in (REPO / "crds").glob("*.yaml") if p.name != "kustomization.yaml")
# Where kopf stores the handled spec: the operator moves kopf's bookkeeping under its own prefix.
DIFFBASE = f"{names.KOPF_PREFIX}/last-handled-configuration"


def _cluster(workdir: Path) -> Any:
    """The test suite's real API server stack (k8s/bootstrap.sh builds it once, then caches it)."""
    sys.path.insert(0, str(REPO))
    from tests.kube.cluster import KubeCluster, bootstrap, cache_dir

    shutil.rmtree(workdir, ignore_errors=True)  # etcd data and certs of an earlier run
    workdir.mkdir(parents=True)
    cluster = KubeCluster(workdir, bootstrap(cache_dir(), echo=lambda line: log(f"k8s: {line}")))
    cluster.start()
    return cluster


def _ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"].get("generation") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


@dataclass
class OperatorProcess:
    """`tfms operator` (through bench.operator_proc, for the sys.modules probe) as a child."""

    workdir: Path
    kubeconfig: Path
    endpoint: str
    env: dict[str, str]
    namespace: str
    name: str = "operator"
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def probe_path(self) -> Path:
        return self.workdir / f"{self.name}.probe.json"

    def start(self) -> OperatorProcess:
        env = child_env(KUBECONFIG=str(self.kubeconfig), TFMS_CLOUDRUN_ENDPOINT=self.endpoint, **self.env)
        with self.log_path.open("wb") as out:
            self.started = time.monotonic()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "bench.operator_proc", str(self.probe_path), "operator", "--standalone",
                 "-n", self.namespace], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=REPO)
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_count(self, text: str) -> int:
        return self.log_path.read_text(errors="replace").count(text) if self.log_path.exists() else 0

    def probe(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.popen is not None
        self.probe_path.unlink(missing_ok=True)
        self.popen.send_signal(signal.SIGUSR1)
        wait_until("the operator's probe", self.probe_path.exists, timeout, self)
        time.sleep(0.05)  # the file is written in one call; give it the moment to close
        result: dict[str, Any] = json.loads(self.probe_path.read_text())
        return result

    def stop(self) -> None:
        if self.popen is not None:
            stop_process(self.popen, timeout=30)


def wait_until(what: str, check: Any, timeout: float, operator: OperatorProcess | None = None,
               step: float = 0.05) -> float:
    """Poll `check` until it holds; return when it did. Fails early if the operator died."""
    deadline = time.monotonic() + timeout
    while not check():
        if operator is not None and not operator.alive():
            raise RuntimeError(f"the operator exited while waiting for {what}; see {operator.log_path}")
        if time.monotonic() > deadline:
            where = f"; see {operator.log_path}" if operator else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{where}")
        time.sleep(step)
    return time.monotonic()


class Objects:
    """TFModelService objects in the bench namespace, created and read over the API server."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"

    def create(self, bodies: list[dict[str, Any]], threads: int = 8) -> None:
        def one(body: dict[str, Any]) -> None:
            status, reply = self.cluster.request("POST", self.path, body, content_type="application/json")
            if status not in (200, 201):
                raise RuntimeError(f"creating {body['metadata']['name']}: HTTP {status} {reply}")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, bodies))

    def ready_count(self) -> int:
        status, reply = self.cluster.request("GET", self.path)
        if status != 200:
            raise RuntimeError(f"listing objects: HTTP {status} {reply}")
        return sum(1 for obj in reply.get("items", []) if _ready(obj) and obj["metadata"]["name"] != "warmup")

    def settled_count(self) -> int:
        """Objects kopf has finished with: it stores the handled spec after the handlers succeed."""
        _, reply = self.cluster.request("GET", self.path)
        return sum(1 for o in reply.get("items", []) if DIFFBASE in (o["metadata"].get("annotations") or {}))

    def resource_versions(self) -> dict[str, str]:
        _, reply = self.cluster.request("GET", self.path)
        return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in reply.get("items", [])}


def _calls(emulator: EmulatorProcess) -> Counter[str]:
    return emulator.call_counts()


def _per_service(counts: Counter[str], size: int) -> dict[str, Any]:
    writes = sum(counts[m] for m in WRITES)
    reads = sum(counts[m] for m in READS)
    return {"writes": writes, "reads": reads, "reads_per_service": reads / size, "writes_per_service": writes / size,
            "calls": dict(counts)}


def restart_and_resync(cluster: Any, emulator: EmulatorProcess, objects: Objects, workdir: Path, size: int,
                       *, snapshot_ttl: float, resync: float, name: str) -> dict[str, Any]:
    """Restart the operator on N converged objects: footprint, the resume pass, one timer resync."""
    versions = objects.resource_versions()
    emulator.clear_calls()
    op = OperatorProcess(workdir, cluster.kubeconfig, emulator.address, {
        "TFMS_RESYNC_SECONDS": str(resync), "TFMS_POLL_SECONDS": "1", "TFMS_LOG_LEVEL": "INFO",
        "TFMS_SNAPSHOT_TTL_SECONDS": str(snapshot_ttl)}, objects.namespace, name=name).start()
    try:
        first = wait_until("the first Cloud Run call", lambda: bool(
            emulator.calls("ListServices") or emulator.calls("GetService")), 60, op, step=0.02)
        start_to_first = first - op.started
        resumed = "Handler 'reconcile' succeeded"
        wait_until(f"{size + 1} resumed objects", lambda: op.log_count(resumed) >= size + 1, 60 + size / 20, op)
        resume_calls = _calls(emulator)
        assert op.popen is not None
        memory = memory_mib(op.popen.pid)
        maps = mapped_files(op.popen.pid)
        probe = op.probe()
        emulator.clear_calls()
        timers = "Timer 'resync' succeeded"
        wait_until(f"{size + 1} timer resyncs", lambda: op.log_count(timers) >= size + 1,
                   resync * 2 + 60 + size / 20, op, step=0.1)
        resync_calls = _calls(emulator)
        unchanged = objects.resource_versions() == versions
    finally:
        op.stop()
    tf_libs = sorted(p for p in maps if "tensorflow" in p.lower())
    return {
        "start_to_first_call_s": start_to_first,
        "rss_mib": memory.get("VmRSS", float("nan")), "peak_rss_mib": memory.get("VmHWM", float("nan")),
        "tensorflow_modules": probe["tensorflow_modules"], "tensorflow_libs": tf_libs, "modules": probe["modules"],
        "resume": _per_service(resume_calls, size + 1), "resync": _per_service(resync_calls, size + 1),
        "objects_unchanged": unchanged,
    }


def run(sizes: list[int], workdir: Path, floor_work: dict[int, float], resync: float = 15.0) -> dict[int, Any]:
    """Every operator figure at every size; `floor_work[size]` is the floor's time, same run."""
    workdir.mkdir(parents=True, exist_ok=True)
    log("starting the loopback Kubernetes API server (etcd + apiextensions-apiserver)")
    cluster = _cluster(workdir / "kube")
    results: dict[int, Any] = {}
    try:
        _apply_crd(cluster)
        for size in sizes:
            results[size] = _one_size(cluster, workdir / f"operator-{size}", size, floor_work.get(size), resync)
    finally:
        cluster.stop()
    return results


def import_seconds() -> float:
    """What the operator process spends importing (kopf, the Cloud Run client, tfms) before kopf starts."""
    code = ("import time; t = time.perf_counter(); import tfms.cli.main, tfms.handlers.run; "
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env(),
                          cwd=REPO, timeout=120)
    return float(done.stdout.strip())


def _apply_crd(cluster: Any, attempts: int = 5) -> None:
    """`kubectl wait` right after `apply` can see a CRD with no conditions yet and fail: retry."""
    from tests.kube.cluster import KubeError

    for attempt in range(attempts):
        try:
            for crd in CRDS:
                cluster.apply_crd(crd)
            return
        except KubeError as exc:
            if "accessor error" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.5)


def _one_size(cluster: Any, workdir: Path, size: int, floor_work: float | None, resync: float) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    namespace = f"bench-{size}"  # one per size: sizes stay independent, nothing to delete
    cluster.kubectl("create", "namespace", namespace, check=True)
    objects = Objects(cluster, namespace)
    out: dict[str, Any] = {}
    with EmulatorProcess(workdir / "emulator").start() as emulator:
        op = OperatorProcess(workdir, cluster.kubeconfig, emulator.address, {
            "TFMS_RESYNC_SECONDS": "3600", "TFMS_POLL_SECONDS": "1", "TFMS_LOG_LEVEL": "WARNING"},
            namespace, name="operator-converge").start()
        try:
            warmup = spec_object(0, namespace)
            warmup["metadata"]["name"], warmup["spec"]["project"] = "warmup", "bench-warmup"
            objects.create([warmup])
            wait_until("the warm-up object Ready", lambda: any(
                _ready(o) for o in cluster.request("GET", objects.path)[1].get("items", [])), 120, op, step=0.1)
            log(f"operator: creating {size} TFModelServices through the API server")
            began = time.monotonic()
            objects.create([spec_object(i, namespace) for i in range(size)])
            created = time.monotonic()
            wait_until(f"{size} objects Ready", lambda: objects.ready_count() >= size, 120 + size, op, step=0.5)
            out["converge_s"] = time.monotonic() - began
            out["create_objects_s"] = created - began
            # Stopped before kopf stores the handled spec, a restart would see creations, not resumes.
            wait_until("kopf's bookkeeping", lambda: objects.settled_count() >= size + 1, 10 + size / 50, op,
                       step=0.2)
            out["settled"] = objects.settled_count()
            assert op.popen is not None
            out["converge_peak_rss_mib"] = memory_mib(op.popen.pid).get("VmHWM", float("nan"))
        finally:
            op.stop()
        out["floor_s"] = floor_work
        out["ratio"] = out["converge_s"] / floor_work if floor_work else float("nan")
        log(f"operator: {size} Ready in {out['converge_s']:.2f}s; restarting it on the converged objects")
        out["import_s"] = import_seconds()
        out["snapshot"] = restart_and_resync(cluster, emulator, objects, workdir, size, snapshot_ttl=5.0,
                                             resync=resync, name="operator-snapshot")
        out["no_snapshot"] = restart_and_resync(cluster, emulator, objects, workdir, size, snapshot_ttl=0.0,
                                                resync=resync, name="operator-get-each")
    return out
