"""A real Kubernetes API server on loopback for tests: etcd + the core-API shim + the
apiextensions-apiserver built by ``k8s/bootstrap.sh`` (see ``k8s/README.md``).

The real server is what makes these tests worth having: CRD schema validation, strict field
validation, defaults, the status subresource, finalizers, resourceVersion conflicts and watches
behave as in a cluster, instead of as a fake believes they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import kopf

from tfms.emulator.local.process import with_deathsig

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "k8s" / "bootstrap.sh"
SHIM = Path(__file__).with_name("shim.py")
APISERVER = "kube-apiextensions-apiserver"
# Admission plugins whose informers need APIs nobody serves here (admissionregistration.k8s.io):
# with them on, the server's caches never sync and /readyz never passes.
DISABLED_ADMISSION = ",".join(("MutatingAdmissionWebhook", "ValidatingAdmissionWebhook",
                               "MutatingAdmissionPolicy", "ValidatingAdmissionPolicy"))


class KubeError(RuntimeError):
    """The stack could not be built, started or used; the message carries the logs."""


def cache_dir() -> Path:
    """Where bootstrap.sh keeps the binaries (the same default as the script's)."""
    return Path(os.environ.get("TFMS_K8S_CACHE") or Path.home() / ".cache" / "tfms-k8s")


def bootstrap(cache: Path | None = None, echo: Callable[[str], None] | None = None,
              timeout: float = 1800) -> Path:
    """Run ``k8s/bootstrap.sh`` (instant when cached, ~5 min from scratch) and return its
    ``bin`` directory. Raises KubeError with the script's whole output when it fails."""
    cache = cache or cache_dir()
    proc = subprocess.Popen(["bash", str(BOOTSTRAP), str(cache)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo:
                echo(line.rstrip("\n"))
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0:
        raise KubeError(f"k8s/bootstrap.sh {cache} failed (exit {code}):\n{''.join(lines)}")
    return cache / "bin"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while choosing, so none repeats). Fixed
    ports collide with whatever else runs on a shared machine."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class Proc:
    """One started process of the stack, with its combined output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.name} (pid {self.popen.pid}, {self.log}) ---\n" + "\n".join(text[-lines:])

    def rss_mb(self) -> float:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


@dataclass
class KubeCluster:
    """The running stack. Clients talk to ``server`` (the shim, plain HTTP, no auth); the
    real apiserver is behind it at ``apiserver_url``. ``env`` is for subprocesses: it has
    ``KUBECONFIG``, a private ``KUBECACHEDIR`` (kubectl's shared on-disk cache once kept a
    corrupt OpenAPI document) and ``bin_dir`` first on ``PATH``."""

    workdir: Path
    bin_dir: Path
    server: str = ""
    apiserver_url: str = ""
    kubeconfig: Path = field(init=False)
    env: dict[str, str] = field(init=False, repr=False)  # the whole environment: keep it out of reports
    procs: list[Proc] = field(default_factory=list, repr=False)
    ready_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.kubeconfig = self.workdir / "kubeconfig"
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                    "KUBECACHEDIR": str(self.workdir / "kubectl-cache"),
                    "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> None:
        """Start etcd, the shim and the apiserver on free loopback ports; return once the
        apiserver's /readyz passes through the shim. Raises KubeError with the logs."""
        started = time.monotonic()
        client, peer, secure = free_ports(3)
        self.apiserver_url = f"https://127.0.0.1:{secure}"
        etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--name", "tfms-test", "--data-dir", str(self.workdir / "etcd-data"),
            "--unsafe-no-fsync", "--log-level", "warn",
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"tfms-test=http://127.0.0.1:{peer}"])
        port_file = self.workdir / "shim.port"
        self._spawn("shim", [sys.executable, str(SHIM), "--listen", "127.0.0.1:0",
                             "--upstream", self.apiserver_url, "--port-file", str(port_file)])
        deadline = started + timeout
        self.wait_for("the shim's port file", port_file.exists, deadline - time.monotonic())
        self.server = f"http://127.0.0.1:{port_file.read_text().strip()}"
        self._write_kubeconfig()
        self.wait_for("etcd /health", lambda: b'"true"' in self._get(f"{etcd_url}/health"),
                      deadline - time.monotonic())
        self._spawn(APISERVER, [
            str(self.bin_dir / APISERVER), "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--secure-port", str(secure), "--cert-dir", str(self.workdir / "certs"),
            "--test-allow-all", "--kubeconfig", str(self.kubeconfig),  # the "core" cluster: the shim
            "--disable-admission-plugins", DISABLED_ADMISSION, "--enable-priority-and-fairness=false"])
        self.wait_for("apiserver /readyz through the shim", lambda: self._get(f"{self.server}/readyz") == b"ok",
                      deadline - time.monotonic())
        self.ready_seconds = time.monotonic() - started

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM everything at once, SIGKILL what is left after ``timeout``; reap all."""
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def rss_mb(self) -> dict[str, float]:
        return {p.name: round(p.rss_mb(), 1) for p in self.procs}

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            # Dies with pytest even if it is killed without tearing down. Not a preexec_fn: that
            # forces a plain fork(), and with gRPC threads in this process the child then aborts
            # before exec now and then ("epoll_wait error: Bad file descriptor", exit -6).
            popen = subprocess.Popen(with_deathsig(argv), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, env=self.env)
        self.procs.append(Proc(name, popen, log))

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = 30) -> None:
        """Poll ``ready`` until it holds; raise KubeError with the logs at once if a process
        of the stack died, or after ``timeout`` seconds. The way to wait in these tests."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while not ready():
            dead = [p for p in self.procs if p.popen.poll() is not None]
            if dead:
                raise KubeError(f"{dead[0].name} exited ({dead[0].popen.returncode}) while waiting for {what}\n"
                                + self.logs())
            if time.monotonic() > deadline:
                raise KubeError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    @staticmethod
    def _get(url: str) -> bytes:
        try:
            status, body = _http("GET", url, timeout=2)
        except OSError:
            return b""
        return body if status == 200 else b""

    def _write_kubeconfig(self) -> None:
        """JSON is YAML, so this needs no YAML library. No credentials: the shim drops them
        and the apiserver runs with --test-allow-all."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "tfms-test", "preferences": {},
            "clusters": [{"name": "tfms-test", "cluster": {"server": self.server}}],
            "users": [{"name": "tfms-test", "user": {}}],
            "contexts": [{"name": "tfms-test",
                          "context": {"cluster": "tfms-test", "user": "tfms-test", "namespace": "default"}}],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))

    # --- helpers for tests ----------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = False,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the stack. With ``check``, a non-zero exit raises KubeError
        carrying stdout and stderr (a readable test failure, unlike CalledProcessError)."""
        result = subprocess.run([str(self.bin_dir / "kubectl"), *args], input=input, env=self.env,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubeError(f"kubectl {' '.join(args)} exited {result.returncode}\n"
                            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
        """A raw API call through the shim: (HTTP status, decoded JSON body)."""
        status, data = _http(method, self.server + path, body, content_type)
        return status, json.loads(data) if data else None

    def apply_crd(self, path: Path | str, timeout: float = 30) -> str:
        """``kubectl apply`` a CRD file and wait until it is Established, its resources are in
        discovery and its storage answers lists (until then the server says 429 "storage is
        (re)initializing" and kopf backs off for a second). Also waits out the 2 s after
        Established in which the server delays every create by 2 s (an HA safeguard in
        customresource_handler.go), so tests' first creates are not slow. Returns the name."""
        name = self.kubectl("apply", "-f", str(path), "-o", "name", check=True).stdout.strip().split("/")[-1]
        self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s",
                     f"customresourcedefinition/{name}", check=True, timeout=timeout + 10)
        _, crd = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]

        def discovered() -> bool:
            for version in versions:
                status, found = self.request("GET", f"/apis/{group}/{version}")
                if status != 200 or plural not in {r["name"] for r in found.get("resources", [])}:
                    return False
                if self.request("GET", f"/apis/{group}/{version}/{plural}?limit=1")[0] != 200:
                    return False
            return True

        self.wait_for(f"{name} in discovery", discovered, timeout)
        _, crd = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        established = next(c["lastTransitionTime"] for c in crd["status"]["conditions"] if c["type"] == "Established")
        since = datetime.fromisoformat(established.replace("Z", "+00:00")).timestamp()
        self.wait_for(f"{name} established for 2 s", lambda: time.time() >= since + 2.05, timeout)
        return name

    def connection_info(self) -> kopf.ConnectionInfo:
        """What a kopf ``@kopf.on.login()`` handler returns to reach this stack."""
        return kopf.ConnectionInfo(server=self.server, insecure=True, default_namespace="default")

    @contextlib.contextmanager
    def operator(self, registry: kopf.OperatorRegistry, *, settings: kopf.OperatorSettings | None = None,
                 clusterwide: bool = True, namespaces: Collection[str] = (),
                 stop_timeout: float = 15) -> Iterator[KopfThread]:
        """Run a kopf operator with ``registry`` against this stack, in its own thread and
        event loop, for the ``with`` block (standalone: no peering). Adds a login handler to
        the registry. Blocks while starting and stopping: async tests use ``async_operator``."""
        thread = self._kopf_thread(registry, settings, clusterwide, namespaces)
        thread.start()
        try:
            thread.wait_ready()
            yield thread
        finally:
            thread.stop(stop_timeout)

    @contextlib.asynccontextmanager
    async def async_operator(self, registry: kopf.OperatorRegistry, *,
                             settings: kopf.OperatorSettings | None = None, clusterwide: bool = True,
                             namespaces: Collection[str] = (), stop_timeout: float = 15) -> AsyncIterator[KopfThread]:
        """``operator`` for async tests: waits in worker threads, so the test's loop keeps
        serving whatever the operator's handlers call (an in-process emulator, say)."""
        thread = self._kopf_thread(registry, settings, clusterwide, namespaces)
        thread.start()
        try:
            await asyncio.to_thread(thread.wait_ready)
            yield thread
        finally:
            await asyncio.to_thread(thread.stop, stop_timeout)

    def _kopf_thread(self, registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings | None,
                     clusterwide: bool, namespaces: Collection[str]) -> KopfThread:
        info = self.connection_info()

        @kopf.on.login(registry=registry, id="tfms-test-kube")
        def _login(**_: Any) -> kopf.ConnectionInfo:
            return info

        return KopfThread(registry, settings or kopf.OperatorSettings(), clusterwide, namespaces)


class KopfThread(threading.Thread):
    """kopf in a thread with its own event loop. Never the test's loop: at shutdown kopf
    cancels every task created after it started, pytest-asyncio's own tasks included."""

    def __init__(self, registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings,
                 clusterwide: bool, namespaces: Collection[str]) -> None:
        super().__init__(name="kopf-operator", daemon=True)
        self.registry, self.settings = registry, settings
        self.clusterwide, self.namespaces = clusterwide, namespaces
        self.stop_flag, self.ready_flag = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(kopf.operator(
                registry=self.registry, settings=self.settings, standalone=True,
                clusterwide=self.clusterwide, namespaces=self.namespaces,
                stop_flag=self.stop_flag, ready_flag=self.ready_flag))
        except BaseException as err:  # reported by stop(), in the test's thread
            self.error = err

    def wait_ready(self, timeout: float = 30) -> None:
        """``ready_flag`` fires before the watches are open; objects created after this are
        still seen (kopf lists before it watches), so no extra wait is needed."""
        deadline = time.monotonic() + timeout
        while not self.ready_flag.wait(0.05):
            if not self.is_alive() or time.monotonic() > deadline:
                self.stop(5)
                raise KubeError(f"kopf did not start: {self.error!r}")

    def stop(self, timeout: float = 15) -> None:
        self.stop_flag.set()
        self.join(timeout)
        if self.is_alive():
            raise KubeError(f"kopf did not stop within {timeout}s")
        if self.error is not None:
            raise KubeError(f"kopf failed: {self.error!r}") from self.error


def _http(method: str, url: str, body: Any = None, content_type: str = "application/json",
          timeout: float = 30) -> tuple[int, bytes]:
    """Plain stdlib HTTP(S), no proxies (a proxy from the environment must not see loopback
    traffic), certificates unchecked (the apiserver's are self-signed)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": content_type, "Accept": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()
