"""A Segmenter hands its backend's lifecycle to the user: close(), or a with block."""

import pytest

from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.runtime.segmenter import Segmenter


def test_a_with_block_closes_the_backend_and_later_inference_is_refused(tiny_bundle):
    reference, target = next(iter(scene_pairs(1, seed=3)))
    with Segmenter.from_bundle(tiny_bundle, backend="onnxruntime") as seg:
        seg.set_reference(reference.image, reference.mask)
        mask = seg.segment(target.image)
        assert mask.shape == target.image.shape[:2] and not seg.backend.closed
    assert seg.backend.closed
    with pytest.raises(RuntimeError, match="closed"):
        seg.segment(target.image)
    seg.close()  # a second close does nothing
    assert seg.backend.closed

