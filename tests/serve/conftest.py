"""Fixtures of the serving tests: one real Label Studio per test session (test_label_studio*.py)."""

import pytest


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A running Label Studio (tests/support/label_studio.py), started once: it takes ~20 s."""
    from support.label_studio import IN_CI, MISSING, running_label_studio

    if MISSING:
        if IN_CI:
            pytest.fail(f"CI must run the Label Studio tests: {MISSING}", pytrace=False)
        pytest.skip(MISSING)
    with running_label_studio(tmp_path_factory.mktemp("label-studio")) as studio:
        yield studio
