"""Bad input that used to pass `tfms validate`, and messages that used to mislead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import base_object
from tfms.api.validation import validate
from tfms.cli.main import main

HEAD = "apiVersion: serving.tfms.dev/v1alpha1\nkind: TFModelService\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# (YAML after apiVersion/kind, line of the second key, the key)
DUPLICATE_KEYS = [
    pytest.param("metadata: {name: a}\nspec:\n  project: example-project\n  region: us-central1\n"
                 "  region: europe-west1\n  model: {name: m, basePath: gs://b/m}\n", 7, "region", id="spec.region"),
    pytest.param("metadata:\n  name: a\n  name: b\nspec: {}\n", 5, "name", id="metadata.name"),
    pytest.param("metadata: {name: a}\nspec: {}\nspec: {}\n", 5, "spec", id="top-level"),
    pytest.param("metadata: {name: a, name: b}\nspec: {}\n", 3, "name", id="flow-mapping"),
]


@pytest.mark.parametrize(("body", "line", "key"), DUPLICATE_KEYS)
def test_duplicate_yaml_key_is_refused_with_file_line_and_key(body: str, line: int, key: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(HEAD + body)
    code, out, err = run(["validate", str(path)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {path}, line {line}, column ")
    assert f": duplicate key '{key}' (first at line " in err
    assert err.count("\n") == 1


def test_merge_keys_may_still_be_overridden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`<<: *base` then an explicit key is an override on purpose, not a duplicate."""
    path = tmp_path / "merge.yaml"
    # The anchor lives under `status` (ignored on input): an unknown top-level key is refused, as by kubectl.
    path.write_text(HEAD + "metadata: {name: fraud-scorer}\nstatus: &base {project: other-project, region: us-east1}\n"
                    "spec:\n  <<: *base\n  project: example-project\n  model: {name: m, basePath: gs://b/m}\n"
                    "  runtime: {image: 'tensorflow/serving:2.19.0'}\n")
    code, out, _ = run(["render", str(path), "-o", "json"], capsys)
    assert code == 0
    assert '"name": "projects/example-project/locations/us-east1/services/fraud-scorer"' in out


def test_malformed_yaml_names_the_file_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: TFModelService\nspec:\n  a: b: c\n")
    code, _, err = run(["validate", str(path)], capsys)
    assert code == 2
    assert err == f"error: {path}, line 3, column 7: mapping values are not allowed here\n"
    assert "<unicode string>" not in err


def _spec(**overrides: Any) -> dict[str, Any]:
    return base_object(**overrides)


# (object, field, rule); None: valid
INPUT_CASES = [
    pytest.param({**_spec(), "metadata": {"name": "fraud-scorer", "namespace": "ns_Ünï"}},
                 "metadata.namespace", "dns-1123-label", id="namespace-unicode"),
    pytest.param({**_spec(), "metadata": {"name": "fraud-scorer", "namespace": "Team"}},
                 "metadata.namespace", "dns-1123-label", id="namespace-upper"),
    pytest.param({**_spec(), "metadata": {"name": "fraud-scorer", "namespace": "-ml"}},
                 "metadata.namespace", "dns-1123-label", id="namespace-leading-dash"),
    pytest.param({**_spec(), "metadata": {"name": "fraud-scorer", "namespace": "a" * 64}},
                 "metadata.namespace", "dns-1123-label", id="namespace-64"),
    pytest.param({**_spec(), "metadata": {"name": "fraud-scorer", "namespace": 7}},
                 "metadata.namespace", "dns-1123-label", id="namespace-not-string"),
    pytest.param({**_spec(), "metadata": {"name": "fraud-scorer", "namespace": "team-1"}}, None, None,
                 id="namespace-ok"),
    pytest.param(_spec(model={"name": "m", "basePath": "gs://"}), "spec.model.basePath", "model-base-path",
                 id="gs-no-bucket"),
    pytest.param(_spec(model={"name": "m", "basePath": "gs:///x"}), "spec.model.basePath", "model-base-path",
                 id="gs-empty-bucket"),
    pytest.param(_spec(model={"name": "m", "basePath": "gs://Bucket/x"}), "spec.model.basePath",
                 "model-base-path", id="gs-bad-bucket"),
    pytest.param(_spec(model={"name": "m", "basePath": "gs://b"}), None, None, id="gs-bucket-only"),
    pytest.param(_spec(model={"name": "m", "basePath": "gs://my.bucket_1/models/m"}), None, None, id="gs-ok"),
    pytest.param(_spec(runtime={"image": "tensorflow/serving:2.19.0 ; rm -rf /"}), "spec.runtime.image",
                 "image-reference", id="image-shell"),
    pytest.param(_spec(runtime={"image": "tensorflow/serving:"}), "spec.runtime.image", "image-reference",
                 id="image-empty-tag"),
    pytest.param(_spec(runtime={"image": "tensorflow/Serving:2.19.0"}), "spec.runtime.image", "image-reference",
                 id="image-upper-repo"),
    pytest.param(_spec(runtime={"image": "tensorflow/serving"}), "spec.runtime.image", "image-pinned",
                 id="image-untagged-still-pinning"),
    pytest.param(_spec(runtime={"image": "localhost:5000/ml/serving:2.19.0"}), None, None,
                 id="image-registry-port"),
    pytest.param(_spec(runtime={"image": "us-docker.pkg.dev/p/r/serving@sha256:" + "a" * 64}), None, None,
                 id="image-digest"),
]


@pytest.mark.parametrize(("obj", "field", "rule"), INPUT_CASES)
def test_input_rules(obj: dict[str, Any], field: str | None, rule: str | None) -> None:
    errors = validate(obj)
    if field is None:
        assert errors == []
    else:
        assert [(e.path, e.rule) for e in errors] == [(field, rule)]


def test_shell_in_image_is_reported_as_an_invalid_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(_spec(runtime={"image": "tensorflow/serving:2.19.0 ; rm -rf /"})))
    code, out, _ = run(["validate", str(path)], capsys)
    assert code == 1
    assert "spec.runtime.image: not a valid image reference" in out
    assert "latest" not in out


def test_validate_reports_what_apply_refuses_one_service_twice(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump(base_object()))
    second.write_text(yaml.safe_dump({**base_object(), "metadata": {"name": "fraud-scorer", "namespace": "other"}}))
    other = tmp_path / "c.yaml"
    other.write_text(yaml.safe_dump(base_object(region="europe-west1")))  # another region: another service
    code, out, _ = run(["validate", str(first), str(second), str(other)], capsys)
    assert code == 1
    message = (f"metadata.name: Cloud Run service example-project/us-central1/fraud-scorer is also defined by "
               f"{first} [service-unique] (got 'fraud-scorer')")
    assert out.splitlines() == [f"{first}: ok", f"{second}: 1 error(s)", f"  - {message}", f"{other}: ok"]
    code, _, err = run(["render", str(first), str(second)], capsys)  # parse_all: the same check, same words
    assert code == 1
    assert err == f"error: {second}: 1 invalid field(s):\n  - {message}\n"


def test_inspect_model_on_a_file_says_not_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "saved_model.pb"
    path.write_bytes(b"")
    code, _, err = run(["inspect-model", str(path)], capsys)
    assert code == 2
    assert err.startswith(f"error: {path}: is not a directory")
    code, _, err = run(["inspect-model", str(tmp_path / "missing")], capsys)
    assert (code, err) == (2, f"error: {tmp_path / 'missing'}: no such directory\n")


def test_json_escaped_characters_beyond_the_bmp_are_read_as_written(tmp_path: Path) -> None:
    """JSON writes U+10000 and up as a surrogate pair; PyYAML alone kept the two halves and the
    relative-path resolution crashed with UnicodeEncodeError (found by the long hypothesis run)."""
    import json

    from tfms.cli.files import load

    doc = {"apiVersion": "serving.tfms.dev/v1alpha1", "kind": "TFModelService",
           "metadata": {"name": "emoji", "annotations": {"note": "\U0001F600"}},
           "spec": {"project": "example-project", "region": "us-central1",
                    "model": {"name": "m", "basePath": "models/\U00010000"}}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc), encoding="utf-8")  # ensure_ascii: "\ud83d\ude00"
    [manifest] = load([str(path)])
    assert manifest.obj["metadata"]["annotations"]["note"] == "\U0001F600"
    assert manifest.obj["spec"]["model"]["basePath"] == str((tmp_path / "models" / "\U00010000").resolve())


def test_a_lone_surrogate_escape_is_refused_with_its_field(tmp_path: Path) -> None:
    from tfms.cli.files import ManifestError, load

    path = tmp_path / "m.json"
    path.write_text('{"apiVersion": "serving.tfms.dev/v1alpha1", "kind": "TFModelService", '
                    '"metadata": {"name": "x"}, "spec": {"model": {"basePath": "a\\ud800b"}}}', encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load([str(path)])
    assert str(info.value) == (f"{path}: spec.model.basePath: a lone UTF-16 surrogate escape (half of a pair) "
                               "is not valid text")
