"""Fixtures of the runtime tests."""

import pytest
from support.scenes import example_shot


@pytest.fixture(scope="module")
def references(segmenter):
    """Three concepts of drawn scenes, the rectangle with two shots: {name: Reference}."""
    return {
        "ellipse": segmenter.encode_reference([example_shot(20, 0)]),
        "rectangle": segmenter.encode_reference([example_shot(21, 1), example_shot(31, 1)]),
        "triangle": segmenter.encode_reference([example_shot(22, 2)]),
    }


@pytest.fixture(scope="module")
def authors(tiny_bundle):
    """The authors' pipeline (insid3.authors_way, torch) on the tiny bundle's weights: the parity yardstick."""
    from insid3 import authors_way

    return authors_way.load_model(tiny_bundle)
