"""COCO RLE: round trips, and equality with pycocotools (the format's own implementation)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from insid3.engine.runtime.rle import decode_rle, encode_rle, run_lengths

masks = st.tuples(st.integers(1, 30), st.integers(1, 30)).flatmap(lambda hw: arrays(bool, hw))


@settings(max_examples=200, deadline=None)
@given(masks)
def test_round_trip(mask):
    np.testing.assert_array_equal(decode_rle(encode_rle(mask)), mask)


def test_runs_are_column_major_and_start_with_zeros():
    mask = np.array([[1, 0], [1, 1]], bool)  # column-major: 1 1 0 1
    assert run_lengths(mask) == [0, 2, 1, 1]


@settings(max_examples=100, deadline=None)
@given(masks)
def test_equals_pycocotools(mask):
    mask_util = pytest.importorskip("pycocotools.mask")
    theirs = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    ours = encode_rle(mask)
    assert ours["counts"] == theirs["counts"].decode() and ours["size"] == list(theirs["size"])


def test_uncompressed_counts_decode_too():
    mask = np.array([[0, 1], [0, 1]], bool)
    np.testing.assert_array_equal(decode_rle({"size": [2, 2], "counts": run_lengths(mask)}), mask)


def test_inconsistent_counts_are_rejected():
    with pytest.raises(ValueError, match="cover 3 pixels"):
        decode_rle({"size": [2, 2], "counts": [1, 2]})
