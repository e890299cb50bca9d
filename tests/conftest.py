"""Shared fixtures: paths to the repo and to ../shared (read in place, never copied)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

# No test waits on Google's metadata server: without credentials google.auth probes it (seconds
# where 169.254.169.254 does not answer at once) before giving up, e.g. `tfms apply`'s model check
# of a fake gs:// path. Read when google.auth is first imported, and inherited by subprocesses.
os.environ.setdefault("NO_GCE_CHECK", "true")
# Specs in tests name fake gs:// buckets; a developer's own credentials must not send them to real
# Cloud Storage. Tests of the model check turn it on themselves (tests/integration/test_model_check.py).
os.environ.setdefault("TFMS_MODEL_CHECK", "off")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TFMS_SHARED_DIR", REPO.parent / "shared"))


def base_object(**spec_overrides: Any) -> dict[str, Any]:
    """A minimal valid TFModelService; tests mutate copies of it."""
    obj: dict[str, Any] = {
        "apiVersion": "serving.tfms.dev/v1alpha1",
        "kind": "TFModelService",
        "metadata": {"name": "fraud-scorer", "namespace": "ml"},
        "spec": {
            "project": "example-project",
            "region": "us-central1",
            "model": {"name": "fraud", "basePath": "gs://example-bucket/models/fraud"},
            "runtime": {"image": "tensorflow/serving:2.19.0"},
        },
    }
    obj["spec"].update(copy.deepcopy(spec_overrides))
    return obj


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set TFMS_SHARED_DIR")
    return SHARED
