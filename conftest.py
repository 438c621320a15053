"""Shared pytest fixtures. Model fixtures live in tests/fixtures_*.py, one file per owner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_models", "tests.fixtures_app"]

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real datasets: $HYBRID_DATA, else ../shared/data."""
    root = Path(os.environ.get("HYBRID_DATA", REPO.parent / "shared" / "data"))
    assert root.is_dir(), f"real data not found at {root}; set HYBRID_DATA"
    return root


# Tests that need a model trained on real data (directly or through the app server) take minutes in total.
TRAINED = {"trained_detector", "trained_classifier", "hand_classifier", "app_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a trained-model fixture as slow, so `pytest -m "not slow"` skips it."""
    for item in items:
        if TRAINED & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One $HYBRID_CACHE for the tests that only run the fixture models, so their ONNX exports and int8 models
    are made once, not in every test (NNCF quantizes each network in seconds to tens of seconds). Tests of the
    cache itself, and of a first run's output, use a fresh one."""
    return tmp_path_factory.mktemp("hybrid-cache")
