"""Models for pre-flight: the committed half_plus_two and the test-built zoo (tests/runtime/tfmodels.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.tfmodels import zoo


@pytest.fixture(scope="session")
def models() -> Path:
    return zoo()
