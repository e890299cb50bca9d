"""A tiny in-memory "core API" in front of the real apiextensions-apiserver.

The apiextensions-apiserver serves CRDs and custom resources only: no ``/api``, no ``/apis``
list (inside kube-apiserver the aggregator serves those). kopf waits for ``v1/namespaces`` in
discovery and posts ``v1/events``; the apiserver itself needs ``services`` and ``namespaces``
(its informers and NamespaceLifecycle admission) from a "core" kubeconfig. This shim serves
just those from memory, builds the ``/apis`` list from the real server's CRDs, and forwards
everything else (custom resources, watches, OpenAPI) to the real server, streaming and
byte for byte. Standalone on purpose (stdlib + aiohttp): it runs as its own process.

Usage: python shim.py --upstream https://127.0.0.1:PORT --port-file FILE [--listen 127.0.0.1:0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import os
import re
import secrets
import signal
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

Obj = dict[str, Any]

HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length"}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
HISTORY = 1000  # watch events kept per resource, for ?watch&resourceVersion=N replays


def status(code: int, reason: str, message: str) -> web.Response:
    """A ``metav1.Status`` error, which is what kubectl and kopf parse for messages."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    return web.json_response(body, status=code)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic-merge and apply patches: for the
    labels/annotations of namespaces, the only things clients change here, it is the same)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def matches(obj: Obj, query: Any) -> bool:
    """Equality-only field and label selectors (``a=b``, ``a==b``, ``a!=b``, ``key``)."""
    meta = obj.get("metadata", {})
    fields = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
    for selector, values in ((query.get("fieldSelector", ""), fields), (query.get("labelSelector", ""),
                                                                         meta.get("labels") or {})):
        for term in filter(None, (t.strip() for t in selector.split(","))):
            m = re.fullmatch(r"([^!=]+)(?:(!=|==|=)(.*))?", term)
            if m is None:
                return False
            key, op, want = m.group(1).strip(), m.group(2), (m.group(3) or "").strip()
            if op is None:
                if key not in values:
                    return False
            elif (values.get(key) == want) != (op != "!="):
                return False
    return True


# --- the smallest protobuf reader that gets ObjectMeta out of kubectl's typed create bodies ---

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes) -> list[tuple[int, bytes]]:
    """(field number, bytes) for the length-delimited fields of a message; others skipped."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            out.append((key >> 3, buf[pos:pos + size]))
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def protobuf_object(body: bytes) -> Obj:
    """Decode a ``k8s\\0`` envelope into {apiVersion, kind, metadata{name, generateName,
    namespace, labels, annotations}}; spec and status are dropped (namespaces need neither)."""
    if not body.startswith(b"k8s\x00"):
        raise ValueError("not a Kubernetes protobuf envelope")
    obj: Obj = {"metadata": {}}
    for num, data in _fields(body[4:]):
        if num == 1:  # TypeMeta
            for sub, value in _fields(data):
                obj[{1: "apiVersion", 2: "kind"}.get(sub, "_")] = value.decode()
        elif num == 2:  # raw object: field 1 is ObjectMeta
            for sub, meta in _fields(data):
                if sub != 1:
                    continue
                for mnum, value in _fields(meta):
                    if mnum in (1, 2, 3):
                        obj["metadata"][{1: "name", 2: "generateName", 3: "namespace"}[mnum]] = value.decode()
                    elif mnum in (11, 12):
                        pair = dict(_fields(value))
                        key = "labels" if mnum == 11 else "annotations"
                        obj["metadata"].setdefault(key, {})[pair[1].decode()] = pair.get(2, b"").decode()
    obj.pop("_", None)
    return obj


class Store:
    """One in-memory resource: its objects, live watchers and a bounded event history."""

    def __init__(self, shim: Shim, plural: str, kind: str, namespaced: bool, short: list[str]) -> None:
        self.shim, self.plural, self.kind, self.namespaced, self.short = shim, plural, kind, namespaced, short
        self.objects: dict[tuple[str, str], Obj] = {}
        self.history: deque[tuple[int, str, Obj]] = deque(maxlen=HISTORY)
        self.watchers: set[asyncio.Queue[tuple[str, Obj]]] = set()
        self.truncated_before = 0  # history holds every event with resourceVersion > this

    def discovery(self) -> Obj:
        return {"name": self.plural, "singularName": self.kind.lower(), "namespaced": self.namespaced,
                "kind": self.kind, "verbs": VERBS, "shortNames": self.short}

    def emit(self, etype: str, obj: Obj) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        if len(self.history) == HISTORY:
            self.truncated_before = self.history[0][0]
        self.history.append((rv, etype, copy.deepcopy(obj)))
        for queue in self.watchers:
            queue.put_nowait((etype, copy.deepcopy(obj)))

    def stamp(self, obj: Obj, namespace: str) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if self.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion=self.shim.tick())
        obj.update(apiVersion="v1", kind=self.kind)
        if self.kind == "Namespace":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        return obj

    def put(self, etype: str, obj: Obj) -> Obj:
        meta = obj["metadata"]
        if etype != "ADDED":
            meta["resourceVersion"] = self.shim.tick()
        key = (meta.get("namespace", ""), meta["name"])
        if etype == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.emit(etype, obj)
        return obj

    def select(self, namespace: str, query: Any) -> list[Obj]:
        return [o for (ns, _), o in sorted(self.objects.items())
                if (not namespace or ns == namespace) and matches(o, query)]


class Shim:
    """The core API (from memory) plus the proxy to the real apiserver."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rv = 1
        self.session: ClientSession | None = None
        self.stores = {s.plural: s for s in (
            Store(self, "namespaces", "Namespace", False, ["ns"]),
            Store(self, "events", "Event", True, ["ev"]),
            Store(self, "services", "Service", True, ["svc"]),
        )}
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            ns = self.stores["namespaces"]
            ns.put("ADDED", ns.stamp({"metadata": {"name": name}}, ""))

    def tick(self) -> str:
        self.rv += 1
        return str(self.rv)

    # --- routing ------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})
        if path == "/api/v1":
            return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                                      "resources": [s.discovery() for s in self.stores.values()]})
        if path == "/apis" and request.method == "GET":
            return await self.apis()
        if path.startswith("/api/"):
            return await self.core(request, path.split("/")[3:])
        return await self.proxy(request)

    async def core(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        """/api/v1/{plural}[/{name}] and /api/v1/namespaces/{ns}/{plural}[/{name}]."""
        namespace = ""
        if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] in self.stores:
            namespace, parts = parts[1], parts[2:]
        store = self.stores.get(parts[0]) if parts else None
        if store is None or len(parts) > 2 or (namespace and not store.namespaced):
            return status(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        name = parts[1] if len(parts) == 2 else ""
        method, query = request.method, request.query
        if method == "GET" and not name:
            if query.get("watch") in ("true", "1"):
                return await self.watch(request, store, namespace)
            items = store.select(namespace, query)
            return web.json_response({"kind": f"{store.kind}List", "apiVersion": "v1",
                                      "metadata": {"resourceVersion": str(self.rv)}, "items": items})
        if method == "POST" and not name:
            return await self.create(request, store, namespace)
        key = (namespace, name)
        current = store.objects.get(key)
        if method == "PATCH" and current is None and "apply-patch" in request.content_type:
            return await self.create(request, store, namespace, name)  # server-side apply creates
        if current is None:
            return status(404, "NotFound", f'{store.plural} "{name}" not found')
        if method == "GET":
            return web.json_response(current)
        if method == "DELETE":
            if store.kind == "Namespace":
                await self.empty_namespace(name)
            return web.json_response(store.put("DELETED", copy.deepcopy(current)))
        if method in ("PATCH", "PUT"):
            try:
                body = await request.json()
            except ValueError as err:
                return status(400, "BadRequest", f"invalid JSON body: {err}")
            if "json-patch" in request.content_type:
                return status(415, "UnsupportedMediaType", "the test shim supports merge patches only")
            if method == "PUT":
                sent_rv = body.get("metadata", {}).get("resourceVersion")
                if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                    return status(409, "Conflict", f'Operation cannot be fulfilled on {store.plural} "{name}": '
                                  "the object has been modified; please apply your changes to the latest version")
                body["metadata"] = {**body.get("metadata", {}), **{k: current["metadata"][k] for k in (
                    "uid", "creationTimestamp", "name") if k in current["metadata"]}}
                new = body
            else:
                new = merge_patch(current, body)
                new["metadata"].update({k: current["metadata"][k] for k in ("uid", "name", "creationTimestamp")})
            if store.namespaced:
                new["metadata"]["namespace"] = namespace
            if "dryRun" in query:
                return web.json_response(new)
            return web.json_response(store.put("MODIFIED", new))
        return status(405, "MethodNotAllowed", f"{method} is not supported by the test shim")

    async def create(self, request: web.Request, store: Store, namespace: str, name: str = "") -> web.Response:
        raw = await request.read()
        try:
            body = protobuf_object(raw) if "protobuf" in request.content_type else json.loads(raw)
        except (ValueError, IndexError, KeyError) as err:
            return status(400, "BadRequest", f"cannot decode the {request.content_type} body: {err}")
        if name:
            body.setdefault("metadata", {})["name"] = name
        if store.namespaced and ("", namespace) not in self.stores["namespaces"].objects:
            return status(404, "NotFound", f'namespaces "{namespace}" not found')
        obj = store.stamp(body, namespace)
        if not obj["metadata"].get("name"):
            return status(422, "Invalid", f"{store.kind} is invalid: metadata.name: Required value")
        if (namespace, obj["metadata"]["name"]) in store.objects:
            return status(409, "AlreadyExists", f'{store.plural} "{obj["metadata"]["name"]}" already exists')
        if "dryRun" in request.query:
            return web.json_response(obj, status=201)
        return web.json_response(store.put("ADDED", obj), status=201)

    async def watch(self, request: web.Request, store: Store, namespace: str) -> web.StreamResponse:
        """Kubernetes watch semantics: initial ADDED events (no RV, RV=0, or WatchList with its
        ``k8s.io/initial-events-end`` bookmark, which client-go 1.36 informers wait for), or a
        replay from history for RV=N (410 Expired if it is too old), then live events."""
        query = request.query
        rv = query.get("resourceVersion", "")
        queue: asyncio.Queue[tuple[str, Obj]] = asyncio.Queue()
        store.watchers.add(queue)  # registered before the snapshot, with no await between
        try:
            backlog: list[tuple[str, Obj]] = []
            if query.get("sendInitialEvents") == "true" or rv in ("", "0"):
                backlog = [("ADDED", o) for o in store.select(namespace, query)]
                if query.get("sendInitialEvents") == "true":
                    backlog.append(("BOOKMARK", {"kind": store.kind, "apiVersion": "v1", "metadata": {
                        "resourceVersion": str(self.rv), "annotations": {"k8s.io/initial-events-end": "true"}}}))
            elif not rv.isdigit() or int(rv) < store.truncated_before:
                backlog = [("ERROR", {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                                      "reason": "Expired", "message": f"too old resource version: {rv}"})]
            else:
                backlog = [(t, copy.deepcopy(o)) for v, t, o in store.history if v > int(rv)]
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                async with asyncio.timeout(float(query.get("timeoutSeconds", "1800"))):
                    for etype, obj in backlog:
                        await self.send(response, etype, obj, namespace, query)
                    while not backlog or backlog[-1][0] != "ERROR":
                        etype, obj = await queue.get()
                        await self.send(response, etype, obj, namespace, query)
            return response
        finally:
            store.watchers.discard(queue)

    @staticmethod
    async def send(response: web.StreamResponse, etype: str, obj: Obj, namespace: str, query: Any) -> None:
        filtered = etype not in ("BOOKMARK", "ERROR")
        if filtered and ((namespace and obj["metadata"].get("namespace") != namespace) or not matches(obj, query)):
            return
        await response.write(json.dumps({"type": etype, "object": obj}).encode() + b"\n")

    async def crds(self) -> list[Obj]:
        assert self.session is not None
        async with self.session.get(f"{self.upstream}/apis/apiextensions.k8s.io/v1/customresourcedefinitions") as r:
            if r.status != 200:
                raise web.HTTPServiceUnavailable(text=f"upstream CRD list failed: {await r.text()}")
            items: list[Obj] = (await r.json())["items"]
            return items

    async def empty_namespace(self, namespace: str) -> None:
        """What namespace finalization does in a cluster: delete the custom resources in it
        (objects with finalizers stay until those are removed), so they do not outlive it."""
        assert self.session is not None
        for crd in await self.crds():
            if crd["spec"]["scope"] != "Namespaced":
                continue
            for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
                url = f"{self.upstream}/apis/{crd['spec']['group']}/{version}/namespaces/{namespace}/"
                async with self.session.delete(url + crd["spec"]["names"]["plural"]) as r:
                    await r.read()
                break
        for store in self.stores.values():
            for key in [k for k in store.objects if store.namespaced and k[0] == namespace]:
                store.put("DELETED", copy.deepcopy(store.objects[key]))

    async def apis(self) -> web.Response:
        """The APIGroupList that kube-apiserver's aggregator would serve: apiextensions plus
        every Established CRD's served versions, in Kubernetes version priority order."""
        crds = await self.crds()
        groups: dict[str, set[str]] = {"apiextensions.k8s.io": {"v1"}}
        for crd in crds:
            conditions = crd.get("status", {}).get("conditions", [])
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                served = {v["name"] for v in crd["spec"]["versions"] if v.get("served")}
                groups.setdefault(crd["spec"]["group"], set()).update(served)
        listed = []
        for group, versions in sorted(groups.items()):
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in sorted(versions, key=version_priority)]
            if entries:
                listed.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": listed})

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """Forward to the real server, streaming both ways and keeping Content-Encoding (a
        decompressed body under a gzip header once poisoned kubectl's on-disk cache)."""
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS | {"authorization"}}
        body = await request.read() if request.body_exists else None
        try:
            upstream = await self.session.request(request.method, self.upstream + request.raw_path,
                                                  headers=headers, data=body, allow_redirects=False)
        except ClientError as err:  # e.g. the apiserver is still starting
            return status(503, "ServiceUnavailable", f"the apiserver behind the test shim is unreachable: {err}")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_HEADERS:
                    response.headers.add(key, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError, ClientError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            return response


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' order: GA > beta > alpha (higher numbers first), then others by name."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), version)


async def serve(listen: str, upstream: str, port_file: str) -> None:
    shim = Shim(upstream)
    host, _, port = listen.rpartition(":")
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", shim.handle)
    # handler_cancellation: a watch handler ends when its client goes away (not at shutdown).
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, int(port))
    await site.start()
    bound = runner.addresses[0][1]
    async with ClientSession(connector=TCPConnector(ssl=False), auto_decompress=False,
                             timeout=ClientTimeout(total=None, connect=10)) as shim.session:
        tmp = f"{port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(str(bound))
        os.replace(tmp, port_file)
        print(f"shim: serving http://{host}:{bound} -> {upstream}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0 picks a free one)")
    parser.add_argument("--upstream", required=True, help="the real apiserver, e.g. https://127.0.0.1:6443")
    parser.add_argument("--port-file", required=True, help="the bound port is written here once serving")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # aiohttp's access log, for debugging
    asyncio.run(serve(args.listen, args.upstream, args.port_file))


if __name__ == "__main__":
    main()
