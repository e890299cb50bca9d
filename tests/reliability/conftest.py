"""The reliability suites use the integration fixtures: a started emulator and our backend on it."""

from __future__ import annotations

import pytest
from google.cloud import run_v2

from tests.integration.conftest import backend, emulator, raw_client
from tfms.backends.cloudrun import CloudRun

__all__ = ["api", "backend", "emulator", "raw", "raw_client"]


@pytest.fixture
def api(backend: CloudRun) -> CloudRun:
    return backend


@pytest.fixture
def raw(raw_client: run_v2.ServicesClient) -> run_v2.ServicesClient:
    """Someone else's client (the console, gcloud, another team's Terraform)."""
    return raw_client
