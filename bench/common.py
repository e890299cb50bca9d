"""Shared pieces: processes, the emulator subprocess, manifests, timing, memory, HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROJECT_QUOTA = 1000  # the emulator's (and Cloud Run's) services per project+region
REGION = "us-central1"
WRITES = ("CreateService", "UpdateService", "DeleteService", "SetIamPolicy", "DeleteRevision")
READS = ("GetService", "ListServices", "GetRevision", "ListRevisions", "GetOperation", "GetIamPolicy")


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tfms_command() -> list[str]:
    """The `tfms` console script next to this interpreter (as a user runs it), else `-m`."""
    script = Path(sys.executable).with_name("tfms")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tfms.cli.main"]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for children: this one, the repo importable, logs quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFMS_")}
    path = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    # The floor makes only Cloud Run calls, so tfms does too: no model pre-flight of the fake gs:// paths.
    env.update(PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", TFMS_MODEL_CHECK="off")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any] | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited ({proc.returncode}) before opening port {port}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaped. Only ever our own children."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MiB."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def mapped_files(pid: int) -> set[str]:
    """Every file a process has mapped (its loaded shared objects included)."""
    paths: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                paths.add(parts[5])
    return paths


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a (live) process has used so far."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- the workload ---------------------------------------------------------------------------------

def project_of(index: int) -> str:
    """Services fill projects 1,000 at a time: Cloud Run's per-region service quota."""
    return f"bench-{index // PROJECT_QUOTA:02d}"


def service_name(index: int) -> str:
    return f"svc-{index:05d}"


def spec_object(index: int, namespace: str = "bench") -> dict[str, Any]:
    """One TFModelService, shaped like manifests/examples/half-plus-two.yaml on Cloud Run."""
    return {
        "apiVersion": "serving.tfms.dev/v1alpha1",
        "kind": "TFModelService",
        "metadata": {"name": service_name(index), "namespace": namespace},
        "spec": {
            "project": project_of(index),
            "region": REGION,
            "model": {"name": "half_plus_two", "basePath": f"gs://bench-models/m{index % 7}", "version": 1},
            "runtime": {"image": "tensorflow/serving:2.19.0", "resources": {"cpu": "1", "memory": "2Gi"}},
            "scaling": {"minInstances": 0, "maxInstances": 3, "concurrency": 16, "timeoutSeconds": 60},
        },
    }


def write_manifests(directory: Path, count: int) -> Path:
    """`count` manifests as one YAML file each, as a GitOps repository would hold them."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"{service_name(i)}.yaml").write_text(yaml.safe_dump(spec_object(i), sort_keys=False))
    return directory


def rendered_bodies(count: int) -> list[dict[str, Any]]:
    """What tfms sends for each manifest, rendered once up front so the floor script pays
    nothing for it: parent, service id, full name, revision and the Service body."""
    from tfms.api.defaults import Defaults
    from tfms.api.validation import parse
    from tfms.render.cloudrun import render_service

    out = []
    defaults = Defaults.from_env({})
    for i in range(count):
        obj = spec_object(i)
        obj["metadata"].pop("namespace")  # as read from a file by `tfms apply`
        rendered = render_service(parse(obj, defaults, service_name(i)))
        out.append({"parent": rendered.parent, "service_id": rendered.service_id, "name": rendered.name,
                    "revision": rendered.revision, "body": rendered.body})
    return out


# --- the Cloud Run emulator, in its own process ------------------------------------------------------

@dataclass
class EmulatorProcess:
    """`tfms emulator` on free loopback ports; its control API counts the calls it got."""

    workdir: Path
    ready_delay: float = 0.0
    address: str = ""
    rest_url: str = ""
    popen: subprocess.Popen[str] | None = field(default=None, repr=False)

    def start(self) -> EmulatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_file = (self.workdir / "emulator.log").open("w")
        self.popen = subprocess.Popen(
            [*tfms_command(), "emulator", "--host", "127.0.0.1", "--port", "0", "--rest-port", "0",
             "--ready-delay", str(self.ready_delay)],
            stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, text=True, env=child_env())
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if "listening on" in line:
                self.address = line.split()[-1]
            elif "REST on" in line:
                self.rest_url = line.split()[-1]
            if self.address and self.rest_url:
                break
        if not (self.address and self.rest_url):
            raise RuntimeError(f"the emulator did not start; see {self.workdir / 'emulator.log'}")
        return self

    def stop(self) -> None:
        if self.popen is not None:
            stop_process(self.popen)
            if self.popen.stdout is not None:
                self.popen.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self if self.popen is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _control(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.rest_url}/_emulator{path}", method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=120) as response:
            data = response.read()
        return json.loads(data) if data else None

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return list(self._control("GET", "/calls" + (f"?method={method}" if method else ""))["calls"])

    def call_counts(self) -> Counter[str]:
        """RPCs received per method. Reads the log method by method (Create requests are big)."""
        counts: Counter[str] = Counter()
        for method in (*WRITES, *READS, "WaitOperation", "ListOperations", "TestIamPermissions"):
            n = len(self.calls(method))
            if n:
                counts[method] = n
        return counts

    def clear_calls(self) -> None:
        self._control("DELETE", "/calls")

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """`with timed() as t:` then `t["seconds"]`."""
    out: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - started


def which(name: str) -> str | None:
    return shutil.which(name)
