"""The local runtime serving half_plus_two: requests/s and latency at 1, 8 and 32 concurrent
clients, divided by the in-process rate (bench.inproc); and the router's added latency.

The load generator is a bare asyncio HTTP/1.1 keep-alive client (one connection per client,
closed loop), far cheaper per request than any HTTP library, so on a 2-core machine most of
the CPU goes to the server being measured. It still shares those cores: the figures are a
lower bound of what the runtime does with the machine to itself.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import REPO, child_env, free_port, log, percentile, stop_process, wait_port

MODEL = REPO / "manifests" / "examples" / "models" / "half_plus_two"
PATH = "/v1/models/half_plus_two:predict"
BODY = b'{"instances": [1.0, 2.0, 5.0]}'
EXPECTED = b'"predictions"'


def _request(host: str, port: int) -> bytes:
    return (f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"predict failed: {head[:80]!r} {body[:200]!r}")
    return body


async def load(host: str, port: int, clients: int, requests: int) -> dict[str, float]:
    """`clients` connections, each sending its share of `requests` back to back."""
    request = _request(host, port)
    latencies: list[float] = []

    async def client(count: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            body = await _one(reader, writer, request)  # connect and warm, not timed
            if EXPECTED not in body:
                raise RuntimeError(f"unexpected prediction {body!r}")
            await ready.wait()
            for _ in range(count):
                t = time.perf_counter()
                await _one(reader, writer, request)
                latencies.append(time.perf_counter() - t)
        finally:
            writer.close()

    ready = asyncio.Event()
    per = max(1, requests // clients)
    tasks = [asyncio.create_task(client(per)) for _ in range(clients)]
    await asyncio.sleep(0)
    began = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    return {"clients": clients, "requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


async def router_overhead(direct: tuple[str, int], routed: tuple[str, int], requests: int,
                          block: int = 50) -> dict[str, float]:
    """One client, alternating blocks of direct and routed requests (drift hits both alike)."""
    samples: dict[str, list[float]] = {"direct": [], "router": []}
    conns = {}
    for key, (host, port) in (("direct", direct), ("router", routed)):
        reader, writer = await asyncio.open_connection(host, port)
        conns[key] = (reader, writer, _request(host, port))
        await _one(reader, writer, conns[key][2])
    try:
        for i in range(max(1, requests // block)):
            for key in (("direct", "router") if i % 2 == 0 else ("router", "direct")):
                reader, writer, request = conns[key]
                for _ in range(block):
                    t = time.perf_counter()
                    await _one(reader, writer, request)
                    samples[key].append(time.perf_counter() - t)
    finally:
        for _, writer, _ in conns.values():
            writer.close()
    direct_p50 = percentile(samples["direct"], 50) * 1000
    router_p50 = percentile(samples["router"], 50) * 1000
    return {"requests": len(samples["router"]), "direct_p50_ms": direct_p50, "router_p50_ms": router_p50,
            "added_p50_ms": router_p50 - direct_p50,
            "direct_p99_ms": percentile(samples["direct"], 99) * 1000,
            "router_p99_ms": percentile(samples["router"], 99) * 1000}


def run(workdir: Path, requests: int, levels: Sequence[int] = (1, 8, 32)) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    port = free_port()
    with (workdir / "runtime.log").open("wb") as rlog:
        server = subprocess.Popen(
            [sys.executable, "-m", "tfms.runtime", f"--rest_api_port={port}", "--port=0",
             "--model_name=half_plus_two", f"--model_base_path={MODEL}"],
            stdout=rlog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env(), cwd=REPO)
    router: subprocess.Popen[str] | None = None
    try:
        log(f"runtime: in-process predict, {requests} requests (loading while the server starts)")
        inproc = workdir / "inproc.json"
        with (workdir / "inproc.log").open("wb") as ilog:
            subprocess.run([sys.executable, "-m", "bench.inproc", str(MODEL), str(requests), str(inproc), str(port)],
                           check=True, env=child_env(), cwd=REPO, stdin=subprocess.DEVNULL, stdout=ilog,
                           stderr=subprocess.STDOUT, timeout=600)
        out["inproc"] = json.loads(inproc.read_text())
        wait_port(port, server, timeout=180)
        for clients in levels:
            log(f"runtime: {clients} concurrent clients, {requests} requests")
            figures = asyncio.run(load("127.0.0.1", port, clients, requests))
            figures["ratio"] = figures["rps"] / out["inproc"]["rps"]
            out[f"c{clients}"] = figures
        router = subprocess.Popen([sys.executable, "-m", "bench.router_host", str(port)], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=child_env(), cwd=REPO,
                                  text=True)
        assert router.stdout is not None
        url = urlsplit(router.stdout.readline().strip())
        if not url.hostname or not url.port:
            raise RuntimeError("the router did not start")
        log(f"runtime: router added latency, {requests} requests each way")
        out["router"] = asyncio.run(router_overhead(("127.0.0.1", port), (url.hostname, url.port), requests))
    finally:
        if router is not None:
            stop_process(router)
            if router.stdout is not None:
                router.stdout.close()
        stop_process(server)
    return out
