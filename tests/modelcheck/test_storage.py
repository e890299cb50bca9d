"""`tfms.backends.storage` against a fake Cloud Storage JSON API on loopback, and on local directories.

The fake (tests/fakegcs.py) answers the three calls the real client makes for pre-flight (list
with and without a delimiter, media download) from an in-memory bucket, so the unmodified
google-cloud-storage client, its paging and its error mapping are what is tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fakegcs import FakeGcs
from tfms.backends.errors import NotFound, Permanent, Transient
from tfms.backends.storage import GcsReader, LocalReader, make_client, reader_for, split_gs
from tfms.modelcheck.check import Expectation, inspect_model

HPT = REPO / "manifests" / "examples" / "models" / "half_plus_two"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGcs]:
    server = FakeGcs()
    server.upload_tree("example-bucket", "models/hpt", HPT)
    server.buckets["example-bucket"]["models/hpt/"] = (b"", 1)  # a "directory" placeholder, as the console makes
    yield server
    server.close()


@pytest.fixture(scope="module")
def gcs(fake: FakeGcs) -> str:
    return fake.url


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


def test_preflight_over_gcs_records_the_generation(fake: FakeGcs, gcs: str) -> None:
    report = inspect_model(GcsReader(make_client(gcs)), "gs://example-bucket/models/hpt", Expectation(version=1))
    assert report.ok and report.served_version == 1
    generation = report.served().saved_model_generation  # type: ignore[union-attr]
    pb_generation = fake.buckets["example-bucket"]["models/hpt/1/saved_model.pb"][1]
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
