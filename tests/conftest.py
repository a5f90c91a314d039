"""Fixtures shared by the runtime tests."""

import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A tiny random-init bundle (2 blocks, 224 px), exported once per test session."""
    from export_fixtures import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), resolution=224, seed=0)
