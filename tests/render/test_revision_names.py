"""B-006 / B-008: revision names are a pure function of the template content."""

from __future__ import annotations

from tests.conftest import base_object
from tfms.api.validation import parse
from tfms.render.cloudrun import render_service


def _revision(**spec: object) -> str:
    return render_service(parse(base_object(**spec))).revision


def test_same_content_same_name() -> None:
    assert _revision() == _revision()


def test_any_template_change_new_name() -> None:
    base = _revision()
    env = _revision(runtime={"image": "tensorflow/serving:2.19.0", "env": [{"name": "A", "value": "1"}]})
    image = _revision(runtime={"image": "tensorflow/serving:2.18.0"})
    version = _revision(model={"name": "fraud", "basePath": "gs://example-bucket/models/fraud", "version": 2})
    assert len({base, env, image, version}) == 4


def test_service_level_changes_keep_the_name() -> None:
    """Traffic and ingress are not part of the revision: no new revision for them."""
    base = _revision()
    assert _revision(traffic=[{"percent": 100, "tag": "stable"}]) == base
    assert _revision(access={"ingress": "internal"}) == base


def test_names_are_prefixed_dns_labels_within_63() -> None:
    obj = base_object()
    obj["metadata"]["name"] = "a" * 49
    name = render_service(parse(obj)).revision
    assert name.startswith("a" * 49 + "-") and len(name) <= 63
    assert name == name.lower() and not name.endswith("-")
