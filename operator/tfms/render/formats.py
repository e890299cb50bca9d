"""`tfms render --format`: which document each format prints.

One registry so the CLI, its help text and the golden tests list the same formats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from tfms.api.model import TFModelService
from tfms.render.cloudrun import render_service
from tfms.render.gcloud import render_gcloud
from tfms.render.knative import render_knative


def _cloudrun(svc: TFModelService) -> dict[str, Any]:
    """The v2 `Service` as the Admin API takes it, with its full resource name."""
    rendered = render_service(svc)
    return {"name": rendered.name, **rendered.body}


_RENDERERS: Final[dict[str, Callable[[TFModelService], dict[str, Any]]]] = {
    "cloudrun": _cloudrun,  # Cloud Run Admin API v2 Service (proto3 JSON)
    "gcloud": render_gcloud,  # Knative-format Cloud Run v1 YAML for `gcloud run services replace`
    "knative": render_knative,  # plain Knative Serving Service; may raise KnativeUnsupported
}
FORMATS: Final = ("cloudrun", "gcloud", "knative")  # a test keeps this equal to the registry


def render_document(svc: TFModelService, fmt: str) -> dict[str, Any]:
    """The document `tfms render --format FMT` prints for `svc`.

    Raises `ValueError` for an unknown format and `KnativeUnsupported` (a `ValueError`) when
    a spec cannot be expressed as plain Knative.
    """
    try:
        render = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown render format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return render(svc)
