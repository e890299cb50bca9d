"""Pre-flight catches each mistake of the issue with a clear message; requests from signatures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tfms.backends.storage import LocalReader
from tfms.modelcheck.check import Expectation, inspect_model
from tfms.modelcheck.reader import MemoryReader
from tfms.modelcheck.requests import check_request, sample_request
from tfms.modelcheck.savedmodel import Signature, TensorSpec
from tfms.modelcheck.versions import parse_version, version_dirs
from tfms.modelcheck.warmup import tfrecord

HPT = REPO / "manifests" / "examples" / "models" / "half_plus_two"
PB = (HPT / "1" / "saved_model.pb").read_bytes()


def codes(report: object) -> set[str]:
    return {i.code for i in report.issues if i.severity != "info"}  # type: ignore[attr-defined]


def mem(files: dict[str, bytes]) -> MemoryReader:
    return MemoryReader(files, root="gs://bucket/m")


def test_a_good_model_resolves_versions_signature_and_generation() -> None:
    reader = mem({"1/saved_model.pb": PB, "2/saved_model.pb": PB, "0003/saved_model.pb": PB, "tmp/x": b""})
    reader.generations = {"3/saved_model.pb": "", "0003/saved_model.pb": "1712"}  # type: ignore[misc]
    report = inspect_model(reader, "gs://bucket/m/")
    assert report.ok and report.served_version == 3
    assert report.served().saved_model_generation == "1712"  # type: ignore[union-attr]
    assert sorted(report.dirs.versions) == [1, 2, 3]  # type: ignore[union-attr]
    assert report.dirs.ignored == ("tmp",)  # type: ignore[union-attr]
    assert list(report.signature().inputs) == ["x"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("files", "expect", "code", "text"),
    [
        ({}, Expectation(), "base-path-empty", "nothing found at gs://bucket/m"),
        ({"saved_model.pb": PB}, Expectation(), "base-path-is-version-dir", "move the model to gs://bucket/m/1/"),
        ({"export/saved_model.pb": PB}, Expectation(), "no-version-dirs", "found export/"),
        ({"1/saved_model.pb": PB}, Expectation(version=3), "version-missing", "versions there: 1"),
        ({"1/saved_model.pb": PB}, Expectation(labels={"canary": 2}), "label-version-missing",
         "Request to assign label to version 2"),
        ({"1/variables/variables.index": b"x"}, Expectation(), "saved-model-missing", "has no saved_model.pb"),
        ({"1/model/saved_model.pb": PB}, Expectation(), "saved-model-missing", "one directory too deep"),
        ({"1/saved_model.pb": b"garbage"}, Expectation(), "saved-model-invalid", "not a SavedModel protobuf"),
        ({"1/saved_model.pb": PB}, Expectation(signature_name="predict"), "signature-missing",
         "the model has: serving_default"),
        ({"1/saved_model.pb": PB}, Expectation(tags=("serve", "gpu")), "tags-missing", "the model has {serve}"),
        ({"1/saved_model.pb": PB, "1/variables/variables.index": b"i",
          "1/variables/variables.data-00000-of-00002": b"d"}, Expectation(), "variables-incomplete",
         "missing variables.data-00001-of-00002"),
        ({"1/saved_model.pb": PB, "1/assets.extra/tf_serving_warmup_requests": b"junk" * 5}, Expectation(),
         "warmup-invalid", "TF Serving would refuse to load this version"),
        ({"1/saved_model.pb": PB, "01/saved_model.pb": PB}, Expectation(), "duplicate-version",
         "01/ and 1/ are all version 1"),
    ],
)
def test_each_mistake_is_caught_with_a_clear_message(files: dict[str, bytes], expect: Expectation, code: str,
                                                     text: str) -> None:
    report = inspect_model(mem(files), "gs://bucket/m", expect)
    found = [i for i in report.issues if i.code == code]
    assert found, report.issues
    assert text in found[0].message
    assert report.ok is (found[0].severity != "error")


def test_pin_and_labels_make_a_specific_policy_i021() -> None:
    """I-021 stage A: versions 42 and 43 load; unlabelled requests get 43."""
    files = {f"{v}/saved_model.pb": PB for v in (41, 42, 43, 44)}
    report = inspect_model(mem(files), "gs://bucket/m", Expectation(labels={"stable": 42, "canary": 43}))
    assert report.ok
    assert report.policy_versions == (42, 43) and report.served_version == 43
    assert sorted(report.versions) == [42, 43]  # only what TF Serving will load is read


def test_warmup_is_counted_or_reported_off() -> None:
    files = {"1/saved_model.pb": PB, "1/assets.extra/tf_serving_warmup_requests": tfrecord(b"\x32\x00") * 2}
    report = inspect_model(mem(files), "gs://bucket/m")
    assert report.ok and report.versions[1].warmup.records == 2  # type: ignore[union-attr]
    off = inspect_model(mem(files), "gs://bucket/m", Expectation(warmup=False))
    assert {i.code for i in off.issues} == {"warmup-disabled"}


def test_real_models_on_disk(models: Path, tmp_path: Path) -> None:
    reader = LocalReader()
    assert inspect_model(reader, str(HPT)).ok
    assert codes(inspect_model(reader, str(models / "nodefault"))) == {"signature-missing"}
    assert inspect_model(reader, str(models / "nodefault"), Expectation(signature_name="predict_images")).ok
    assert codes(inspect_model(reader, str(models / "train"))) == {"tags-missing"}
    assert inspect_model(reader, str(models / "warmup")).versions[1].warmup.records == 3  # type: ignore[union-attr]
    # A base path that is itself the version directory (a common upload mistake).
    assert codes(inspect_model(reader, str(HPT / "1"))) == {"base-path-is-version-dir"}
    partial = tmp_path / "partial"
    shutil.copytree(HPT / "2", partial / "2")
    (partial / "2" / "variables" / "variables.data-00000-of-00001").unlink()
    assert codes(inspect_model(reader, str(partial))) == {"variables-incomplete"}


@pytest.mark.parametrize(("name", "version"), [("1", 1), ("00000123", 123), ("abc", None), ("1.5", None),
                                               (" 7 ", 7), ("99999999999999999999", None)])
def test_version_directory_names_like_simple_atoi(name: str, version: int | None) -> None:
    assert parse_version(name) == version


def test_version_dirs_report_ignored_negative_and_duplicates() -> None:
    dirs = version_dirs(["2", "002", "-1", "latest", "10"])
    assert dirs.versions == {2: "002", 10: "10"} and dirs.latest == 10
    assert (dirs.ignored, dirs.negative, dirs.duplicates) == (("latest",), ("-1",), {2: ("002", "2")})


# ---- requests (B-028, B-030) -------------------------------------------------------------

F = TensorSpec("x:0", "DT_FLOAT", (-1, 2))
S = TensorSpec("s:0", "DT_STRING", (-1,))
MULTI = Signature("tensorflow/serving/predict", {"a": F, "img": S}, {"y": F})
SINGLE = Signature("tensorflow/serving/predict", {"x": F}, {"y": F})


def test_sample_requests_use_rows_and_b64_only_for_strings() -> None:
    assert sample_request(SINGLE) == {"instances": [[0.0, 0.0]]}
    assert sample_request(MULTI, "sig") == {"signature_name": "sig", "instances": [{"a": [0.0, 0.0],
                                                                                    "img": {"b64": ""}}]}
    assert check_request(sample_request(MULTI), MULTI) == []


@pytest.mark.parametrize(
    ("doc", "sig", "message"),
    [
        ({"signature_name": "serving_default", "instances": [[1.0, 2.0]], "inputs": {"x": [[1.0, 2.0]]}}, SINGLE,
         "expecting only one of 'inputs' or 'instances' keys to exist"),  # B-028
        ({"signature_name": "serving_default"}, SINGLE, "Missing 'inputs' or 'instances' key"),  # B-028
        ({"instances": []}, SINGLE, "No values in 'instances' array"),
        ({"instances": [{"b64": "AAAAAAAA8D8AAAAAAAAAQA=="}]}, SINGLE, "only for DT_STRING inputs"),  # B-030
        ({"instances": [[1.0, 2.0]]}, MULTI, "expecting list of objects"),
        ({"instances": [{"a": [1.0, 2.0]}]}, MULTI, "keys must be equal to: a,img"),
        ({"inputs": {"a": [[1.0, 2.0]]}}, MULTI, "Missing named input: img"),
        ({"instances": [{"a": ["1"], "img": "x"}]}, MULTI, "expected a JSON number for DT_FLOAT"),
        ({"instances": [{"a": [1.0, 2.0], "img": {"b64": "%%"}}]}, MULTI, "Unable to base64 decode"),
    ],
)
def test_request_checker(doc: object, sig: Signature, message: str) -> None:
    problems = check_request(doc, sig)
    assert any(message in str(p) and p.severity == "error" for p in problems), problems


def test_raw_base64_text_is_a_warning_b030() -> None:
    """B-030 first trigger: accepted by TF Serving, but the model gets base64 characters, not the image."""
    (problem,) = check_request({"instances": [{"a": [1.0, 2.0], "img": "/9j/4AAQSkZJRgABAQAAAQABAAD="}]}, MULTI)
    assert problem.severity == "warning" and "wrapped as" in problem.message
