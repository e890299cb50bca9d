"""Issue 10 with the real kopf operator against the real API server and the emulator:

- crash-restart: the operator stopped while its CreateService / DeleteService is in flight and
  started again finishes the job with one revision and no stranded finalizer;
- two replicas with kopf peering (manifests/operator/peering.yaml): one acts, the other waits;
  each object gets exactly the Cloud Run writes one operator would make; when the active one
  dies the other takes over;
- namespace cleanup: objects deleted with their namespace release the operator's finalizer.

Waits are conditions with timeouts, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import os
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
import yaml

from tests.kube.cluster import REPO, KopfThread, KubeCluster
from tests.kube.test_cluster import tfms
from tfms.emulator import Emulator
from tfms.handlers.config import OperatorConfig

CRD = REPO / "crds" / "tfmodelservice.yaml"
PEERING = REPO / "manifests" / "operator" / "peering.yaml"
SETTINGS = {
    "TFMS_RESYNC_SECONDS": "1", "TFMS_POLL_SECONDS": "0.2", "TFMS_RETRY_INITIAL_SECONDS": "0.2",
    "TFMS_RETRY_MAX_SECONDS": "2", "TFMS_SNAPSHOT_TTL_SECONDS": "0.5", "TFMS_MODEL_CHECK": "off",
}
WRITES = {"CreateService", "UpdateService", "DeleteService", "SetIamPolicy"}
PARENT = "projects/example-project/locations/us-central1/services/"


@pytest.fixture(scope="module")
def registry(kube: KubeCluster, emulator: Emulator) -> Iterator[kopf.OperatorRegistry]:
    """The tfms handlers in a registry of their own, configured by TFMS_* for this module."""
    saved = {k: os.environ.get(k) for k in [*SETTINGS, "TFMS_CLOUDRUN_ENDPOINT"]}
    os.environ.update(SETTINGS, TFMS_CLOUDRUN_ENDPOINT=emulator.address)
    kube.apply_crd(CRD)
    previous = kopf.get_default_registry()
    fresh = kopf.OperatorRegistry()
    kopf.set_default_registry(fresh)
    import tfms.handlers.operator as handlers

    importlib.reload(handlers)  # registers into `fresh`, reading the settings above
    _apply_peering(kube)  # every replica here peers (mandatory), as the Deployment's do
    info = kube.connection_info()
    kopf.on.login(registry=fresh, id="tfms-test-kube")(lambda **_: info)
    try:
        yield fresh
    finally:
        kopf.set_default_registry(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def peering_priority() -> int:
    """tfms.handlers.run's, imported late: importing the handlers at collection would register them
    with the default resync interval before tests/kube/test_operator.py configures them."""
    from tfms.handlers.run import peering_priority as draw

    return draw()


class CountingProxy:
    """A loopback TCP relay to the emulator, one per replica: its connection count says whether
    that replica ever talked to Cloud Run (gRPC connects lazily, on the first call)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self.connections = 0
        self.sent = 0  # bytes from the replica to Cloud Run
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self._upstream)
            self._sockets += [client, upstream]
            for a, b, count in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, count), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count:
                    self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for s in self._sockets:
            s.close()


class Replica(KopfThread):
    """One operator replica: kopf with peering (not standalone), its own identity and priority,
    and (optionally) its own way to Cloud Run."""

    def __init__(self, registry: kopf.OperatorRegistry, identity: str, priority: int, lifetime: int = 4,
                 endpoint: str | None = None) -> None:
        settings = kopf.OperatorSettings()
        settings.peering.lifetime = lifetime  # how long a dead replica's keep-alive blocks the others
        super().__init__(registry, settings, True, ())
        self.identity, self.priority, self.endpoint = identity, priority, endpoint

    def run(self) -> None:
        config = OperatorConfig.from_env()
        if self.endpoint:
            config = dataclasses.replace(config, endpoint=self.endpoint)
        try:
            asyncio.run(kopf.operator(
                registry=self.registry, settings=self.settings, standalone=False, peering_name="tfms",
                priority=self.priority, identity=cast(Any, self.identity), clusterwide=True,
                memo=kopf.Memo(config=config),
                stop_flag=self.stop_flag, ready_flag=self.ready_flag))
        except BaseException as err:
            self.error = err


def _one(registry: kopf.OperatorRegistry) -> Replica:
    """A standalone-equivalent replica (the only peer) for the crash-restart tests."""
    replica = Replica(registry, "solo", peering_priority(), lifetime=2)
    replica.start()
    replica.wait_ready()
    return replica


def _apply(kube: KubeCluster, *objs: dict[str, Any]) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs), check=True)


def _get(kube: KubeCluster, name: str, namespace: str = "default") -> dict[str, Any] | None:
    out = kube.kubectl("get", "tfms", name, "-n", namespace, "-o", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def _is_ready(obj: dict[str, Any] | None, generation: int = 1) -> bool:
    status = (obj or {}).get("status", {})
    return status.get("observedGeneration") == generation and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def _wait_ready(kube: KubeCluster, names: list[str], namespace: str = "default", generation: int = 1,
                timeout: float = 60) -> None:
    kube.wait_for(f"{names} Ready", lambda: all(_is_ready(_get(kube, n, namespace), generation) for n in names),
                  timeout=timeout)


def _writes_per_service(emulator: Emulator, names: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for call in emulator.control.calls:
        if call.method not in WRITES:
            continue
        req = call.request
        target = (getattr(req, "service_id", "") or getattr(getattr(req, "service", None), "name", "")
                  or getattr(req, "name", "") or getattr(req, "resource", ""))
        short = str(target).rsplit("/", 1)[-1]
        if short in names:
            counts[f"{call.method}:{short}"] += 1
    return counts


def _revisions(emulator: Emulator, name: str) -> list[str]:
    return [r for r in emulator.state.revisions if r.startswith(PARENT + name + "/revisions/")]


def _called(emulator: Emulator, method: str, name: str) -> bool:
    return any(c.method == method and name in str(c.request) for c in emulator.control.calls)


def test_operator_stopped_mid_create_and_mid_delete_then_restarted(
        kube: KubeCluster, registry: kopf.OperatorRegistry, emulator: Emulator) -> None:
    replicas: list[Replica] = []

    def restart() -> None:
        if replicas and replicas[-1].is_alive():
            replicas[-1].stop()  # dies inside the call: no status, no event, the pass never finished
        replicas.append(_one(registry))

    try:
        restart()
        emulator.control.delay("CreateService", 6)  # longer than kopf's exit_timeout (2 s)
        _apply(kube, tfms("crash-create", "default"))
        kube.wait_for("CreateService in flight", lambda: _called(emulator, "CreateService", "crash-create"), 20)
        replicas[-1].stop()
        emulator.control.delay("CreateService", 0)
        assert not _is_ready(_get(kube, "crash-create"))
        restart()
        _wait_ready(kube, ["crash-create"])
        # The dead operator's CreateService was still on its way (held 6 s), so the restarted one
        # created too (a refused ALREADY_EXISTS is retried after a fresh read, never permanent):
        # whatever the order, one service and one revision.
        assert _writes_per_service(emulator, ["crash-create"])["CreateService:crash-create"] >= 1
        # Its create is still asleep in the delay: were the delete below to come first, it would
        # land after it and bring the service back (a late write Cloud Run would also obey).
        kube.wait_for("the dead operator's create answered", lambda: emulator.control.held("CreateService") == 0
                      and emulator.wait_executor_idle(0.1), 15)
        assert len(_revisions(emulator, "crash-create")) == 1

        emulator.control.delay("DeleteService", 6)
        kube.kubectl("delete", "tfms", "crash-create", "-n", "default", "--wait=false", check=True)
        kube.wait_for("DeleteService in flight", lambda: _called(emulator, "DeleteService", "crash-create"), 20)
        replicas[-1].stop()
        emulator.control.delay("DeleteService", 0)
        obj = _get(kube, "crash-create")
        assert obj is not None and "tfms.dev/finalizer" in obj["metadata"]["finalizers"]  # held across the crash
        restart()
        kube.wait_for("object gone", lambda: _get(kube, "crash-create") is None, timeout=30)
        assert PARENT + "crash-create" not in emulator.state.services, [
            (c.method, c.code) for c in emulator.control.calls if "crash-create" in str(c.request)]
    finally:
        emulator.control.delay("CreateService", 0)
        emulator.control.delay("DeleteService", 0)
        for r in replicas:
            if r.is_alive():
                r.stop()


def test_spec_edited_while_the_operator_writes_ends_in_the_newest_spec(
        kube: KubeCluster, registry: kopf.OperatorRegistry, emulator: Emulator) -> None:
    """kubectl apply v2 while the operator's CreateService for v1 is still in flight: the object
    ends Ready at generation 2 with v2's revision serving everything."""
    from tests.reliability.crashkit import revision_of

    v1 = tfms("edited", "default")
    v2 = tfms("edited", "default", runtime={"image": "tensorflow/serving:2.19.0", "env": [{"name": "V", "value": "2"}]})
    replica = _one(registry)
    try:
        emulator.control.delay("CreateService", 1.0)
        _apply(kube, v1)
        kube.wait_for("CreateService in flight", lambda: _called(emulator, "CreateService", "edited"), 20)
        _apply(kube, v2)
        emulator.control.delay("CreateService", 0)
        _wait_ready(kube, ["edited"], generation=2)
    finally:
        emulator.control.delay("CreateService", 0)
        replica.stop()
    want = revision_of("edited", v2["spec"])
    svc = emulator.state.services[PARENT + "edited"]
    assert svc.template.revision == want
    assert {t.revision.rsplit("/", 1)[-1] or svc.latest_ready_revision.rsplit("/", 1)[-1]: t.percent
            for t in svc.traffic_statuses if t.percent} == {want: 100}


def test_objects_deleted_with_their_namespace_release_the_finalizer(
        kube: KubeCluster, registry: kopf.OperatorRegistry, emulator: Emulator) -> None:
    """The API server here has no namespace controller, and its namespaces live in the shim's memory
    (tests/kube/shim.py): deleting one removes it at once instead of leaving it Terminating, after
    which NamespaceLifecycle refuses every write in it, finalizer removals included (a real
    cluster allows them while the namespace terminates). So what the namespace controller does is
    done by hand, in its order: delete every object of the namespace (Delete and Abandon policies),
    wait until their finalizers are released, then the namespace goes."""
    kube.kubectl("create", "namespace", "doomed", check=True)
    names = ["ns-a", "ns-b", "ns-c"]
    _apply(kube, tfms("ns-a", "doomed"), tfms("ns-b", "doomed"), tfms("ns-c", "doomed", deletionPolicy="Abandon"))
    replica = _one(registry)
    try:
        _wait_ready(kube, names, namespace="doomed")
        kube.kubectl("delete", "tfms", "--all", "-n", "doomed", "--wait=false", check=True)
        kube.wait_for("no object left in the namespace",
                      lambda: all(_get(kube, n, "doomed") is None for n in names), timeout=30)
        kube.kubectl("delete", "namespace", "doomed", check=True)
    finally:
        replica.stop()
    services = emulator.state.services
    assert PARENT + "ns-a" not in services and PARENT + "ns-b" not in services
    assert "managed-by" not in dict(services[PARENT + "ns-c"].labels)


def _apply_peering(kube: KubeCluster) -> None:
    docs = list(yaml.safe_load_all(PEERING.read_text()))
    crd = next(d for d in docs if d["kind"] == "CustomResourceDefinition")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "peering-crd.yaml"
        path.write_text(yaml.safe_dump(crd))
        kube.apply_crd(path)
    kube.kubectl("apply", "-f", str(PEERING), check=True)


def test_two_replicas_never_both_act_on_one_object(
        kube: KubeCluster, registry: kopf.OperatorRegistry, emulator: Emulator) -> None:
    first, second = peering_priority(), peering_priority()
    assert first != second  # the regression: equal priorities pause both replicas (kopf's rule)
    proxies = [CountingProxy(emulator.address), CountingProxy(emulator.address)]
    replicas = [Replica(registry, "replica-a", first, endpoint=proxies[0].address),
                Replica(registry, "replica-b", second, endpoint=proxies[1].address)]
    active, passive = (0, 1) if first > second else (1, 0)
    names = [f"ha-{i}" for i in range(8)]
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        kube.wait_for("peers see each other", lambda: len(
            kube.request("GET", "/apis/kopf.dev/v1/clusterkopfpeerings/tfms")[1].get("status") or {}) >= 2, 20)
        # Until its peering watch has seen the other replica, each one resumes the objects left by
        # earlier tests (reads only: they are converged). That window is kopf's; wait it out.
        seen = [-1.0, time.monotonic()]  # bytes sent, when that figure last changed

        def passive_quiet() -> bool:  # nothing sent for a whole second
            if proxies[passive].sent != seen[0]:
                seen[:] = [proxies[passive].sent, time.monotonic()]
            return time.monotonic() - seen[1] >= 1.0

        kube.wait_for("the passive replica quiet", passive_quiet, 20)
        startup = proxies[passive].sent
        _apply(kube, *(tfms(n, "default", access={"invokers": ["user:ops@example.com"]}) for n in names))
        _wait_ready(kube, names)
        writes = _writes_per_service(emulator, names)
        assert proxies[active].sent > 0 and proxies[passive].sent == startup, (
            "the passive replica talked to Cloud Run", [p.sent for p in proxies], startup)
        for n in names:  # one operator's work: one create, one IAM grant, one revision
            assert writes[f"CreateService:{n}"] == 1 and writes[f"SetIamPolicy:{n}"] == 1, writes
            assert len(_revisions(emulator, n)) == 1

        # The active replica dies; the other one takes over once its keep-alive expires.
        replicas[active].stop()
        changed = [tfms(n, "default", access={"invokers": ["user:ops@example.com"]},
                        runtime={"image": "tensorflow/serving:2.19.0", "env": [{"name": "V", "value": "2"}]})
                   for n in names]
        _apply(kube, *changed)
        _wait_ready(kube, names, generation=2, timeout=90)
        assert proxies[passive].sent > startup  # it took over
        after = _writes_per_service(emulator, names)
        for n in names:
            assert after[f"CreateService:{n}"] == 1 and after[f"SetIamPolicy:{n}"] == 1, after
            assert len(_revisions(emulator, n)) == 2
        kinds = Counter(k.split(":")[0] for k in after.elements())
        print(f"\nCloud Run writes per object with two replicas (create + one update each): "
              f"{sum(after.values()) / len(names):.2f} {dict(kinds)} over {len(names)} objects")
    finally:
        for r in replicas:
            if r.is_alive():
                r.stop()
        for p in proxies:
            p.close()
