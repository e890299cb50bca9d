"""A fake Cloud Storage JSON API on loopback, for the unmodified google-cloud-storage client.

It answers the three calls pre-flight makes (list with and without a delimiter, paged; media
download) from an in-memory bucket, so the real client, its paging and its error mapping are
what tests exercise. Buckets named `denied` answer 403 and `flaky` 503, as real ones can.
Each server has its own objects and its own request log (`calls`), so a test can count reads.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        fake = self.server.fake
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.split("/")
        with fake.lock:
            fake.calls.append(url.path)
        if url.path.startswith("/download/storage/v1/b/"):
            bucket, name = parts[5], unquote("/".join(parts[7:]))
            data = fake.buckets.get(bucket, {}).get(name)
            if data is None:
                return self._json(404, {"error": {"code": 404, "message": "No such object"}})
            self.send_response(200)
            self.send_header("Content-Length", str(len(data[0])))
            self.end_headers()
            self.wfile.write(data[0])
            return None
        bucket = parts[4]
        if bucket == "denied":
            return self._json(403, {"error": {"code": 403, "message": "caller does not have storage.objects.list"}})
        if bucket == "flaky":
            return self._json(503, {"error": {"code": 503, "message": "backend unavailable"}})
        if bucket not in fake.buckets:
            return self._json(404, {"error": {"code": 404, "message": "The specified bucket does not exist."}})
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter")
        items, prefixes = [], set()
        for name, (content, generation) in sorted(fake.buckets[bucket].items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter)[0] + delimiter)
                continue
            items.append({"kind": "storage#object", "bucket": bucket, "name": name, "size": str(len(content)),
                          "generation": str(generation)})
        start = int(query.get("pageToken", "0"))
        page = items[start:start + fake.page_size]
        doc: dict[str, Any] = {"kind": "storage#objects", "items": page}
        if start == 0 and prefixes:
            doc["prefixes"] = sorted(prefixes)
        if start + fake.page_size < len(items):
            doc["nextPageToken"] = str(start + fake.page_size)
        return self._json(200, doc)


class _Server(ThreadingHTTPServer):
    fake: FakeGcs


class FakeGcs:
    """One fake server: `buckets[bucket][object name] = (content, generation)`."""

    def __init__(self, page_size: int = 2) -> None:
        self.buckets: dict[str, dict[str, tuple[bytes, int]]] = {}
        self.calls: list[str] = []
        self.page_size = page_size
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def upload_tree(self, bucket: str, prefix: str, root: Path, first_generation: int = 1000) -> None:
        """Every file under `root` as `prefix/relative/path`, each with its own generation."""
        files = self.buckets.setdefault(bucket, {})
        for path in sorted(root.rglob("*")):
            if path.is_file():
                files[f"{prefix}/{path.relative_to(root).as_posix()}"] = (path.read_bytes(),
                                                                          first_generation + len(files))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
