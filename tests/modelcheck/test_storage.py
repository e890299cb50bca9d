"""`tfms.backends.storage` against a fake Cloud Storage JSON API on loopback, and on local directories.

The fake answers the three calls the real client makes for pre-flight (list with and without a
delimiter, media download) from an in-memory bucket, so the unmodified google-cloud-storage
client, its paging and its error mapping are what is tested.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from tests.conftest import REPO
from tfms.backends.errors import NotFound, Permanent, Transient
from tfms.backends.storage import GcsReader, LocalReader, make_client, reader_for, split_gs
from tfms.modelcheck.check import Expectation, inspect_model

HPT = REPO / "manifests" / "examples" / "models" / "half_plus_two"


class FakeGcs(BaseHTTPRequestHandler):
    buckets: dict[str, dict[str, tuple[bytes, int]]] = {}
    page_size = 2
    calls: list[str] = []

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
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.split("/")
        self.calls.append(url.path)
        if url.path.startswith("/download/storage/v1/b/"):
            bucket, name = parts[5], unquote("/".join(parts[7:]))
            data = self.buckets.get(bucket, {}).get(name)
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
        if bucket not in self.buckets:
            return self._json(404, {"error": {"code": 404, "message": "The specified bucket does not exist."}})
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter")
        items, prefixes = [], set()
        for name, (data, generation) in sorted(self.buckets[bucket].items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter)[0] + delimiter)
                continue
            items.append({"kind": "storage#object", "bucket": bucket, "name": name, "size": str(len(data)),
                          "generation": str(generation)})
        start = int(query.get("pageToken", "0"))
        page = items[start:start + self.page_size]
        doc: dict[str, Any] = {"kind": "storage#objects", "items": page}
        if start == 0 and prefixes:
            doc["prefixes"] = sorted(prefixes)
        if start + self.page_size < len(items):
            doc["nextPageToken"] = str(start + self.page_size)
        return self._json(200, doc)


@pytest.fixture(scope="module")
def gcs() -> Iterator[str]:
    files: dict[str, tuple[bytes, int]] = {}
    for path in HPT.rglob("*"):
        if path.is_file():
            files[f"models/hpt/{path.relative_to(HPT).as_posix()}"] = (path.read_bytes(), 1000 + len(files))
    files["models/hpt/"] = (b"", 1)  # a "directory" placeholder object, as the console creates
    FakeGcs.buckets = {"example-bucket": files}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGcs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_split_gs() -> None:
    assert split_gs("gs://b/a/b/") == ("b", "a/b")
    assert split_gs("gs://b") == ("b", "")
    with pytest.raises(ValueError, match="no bucket"):
        split_gs("gs:///x")


def test_list_walk_and_read_through_the_real_client(gcs: str) -> None:
    reader = GcsReader(make_client(gcs))
    listing = reader.list_dir("gs://example-bucket/models/hpt")
    assert listing.dirs == ("1", "2") and listing.files == ()
    files = reader.walk("gs://example-bucket/models/hpt/2")
    assert [f.path for f in files] == ["fingerprint.pb", "saved_model.pb", "variables/variables.data-00000-of-00001",
                                       "variables/variables.index"]
    assert all(f.generation.isdigit() for f in files)
    assert reader.read("gs://example-bucket/models/hpt/1/saved_model.pb") == (HPT / "1" / "saved_model.pb").read_bytes()


def test_preflight_over_gcs_records_the_generation(gcs: str) -> None:
    report = inspect_model(GcsReader(make_client(gcs)), "gs://example-bucket/models/hpt", Expectation(version=1))
    assert report.ok and report.served_version == 1
    generation = report.served().saved_model_generation  # type: ignore[union-attr]
    pb_generation = FakeGcs.buckets["example-bucket"]["models/hpt/1/saved_model.pb"][1]
    assert generation == str(pb_generation)
    missing = inspect_model(GcsReader(make_client(gcs)), "gs://example-bucket/models/nothing-here")
    assert [i.code for i in missing.issues] == ["base-path-empty"]


@pytest.mark.parametrize(("bucket", "error", "text"), [
    ("no-such-bucket", NotFound, "The specified bucket does not exist"),
    ("denied", Permanent, "roles/storage.objectViewer"),
    ("flaky", Transient, "backend unavailable"),
])
def test_storage_errors_are_ours(gcs: str, bucket: str, error: type[Exception], text: str) -> None:
    reader = GcsReader(make_client(gcs))
    with pytest.raises(error, match=text):
        reader.list_dir(f"gs://{bucket}/m")


def test_endpoint_from_the_environment(gcs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFMS_STORAGE_ENDPOINT", gcs)
    reader = reader_for("gs://example-bucket/models/hpt")
    assert isinstance(reader, GcsReader)
    assert reader.list_dir("gs://example-bucket/models/hpt").dirs == ("1", "2")
    assert isinstance(reader_for("/models/x"), LocalReader)


def test_local_reader(tmp_path: Path) -> None:
    reader = LocalReader()
    assert reader.list_dir(str(tmp_path / "missing")).dirs == ()
    listing = reader.list_dir(str(HPT))
    assert listing.dirs == ("1", "2")
    assert [f.path for f in reader.walk(str(HPT / "1"))][-1] == "variables/variables.index"
    with pytest.raises(NotFound):
        reader.read(str(tmp_path / "nope"))
