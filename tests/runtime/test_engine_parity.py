"""End to end: the Segmenter on an exported bundle equals the authors' way on the same weights.

The authors' way (insid3.authors_way) is the plain transcription of the published pipeline:
torch eager backbone, sklearn clustering on the float32 distances, loops over clusters. The engine
runs the ONNX export through each CPU backend and the array kernels; the masks must be identical.
"""

import numpy as np
import pytest

from insid3.engine import Segmenter
from insid3.engine.jobs.scenes import draw_scene, scene_pairs

pytest.importorskip("torch")
pytest.importorskip("sklearn")
from insid3 import authors_way  # noqa: E402  (needs torch)

SIZE = (150, 200)


@pytest.fixture(scope="module")
def episodes():
    """(shots, target, truth): three one-shot scenes and one three-shot scene."""
    single = [([(r.image, r.mask)], t.image, t.mask) for r, t in scene_pairs(3, size=SIZE, seed=10)]
    shots = [draw_scene(40 + i, SIZE, concept=1) for i in range(3)]
    target = draw_scene(50, SIZE, concept=1)
    return single + [([(s.image, s.mask) for s in shots], target.image, target.mask)]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "torch"])
def test_masks_equal_the_authors_way(tiny_bundle, authors, episodes, backend):
    segmenter = Segmenter.from_bundle(tiny_bundle, backend=backend)
    foreground = 0
    for shots, target, _ in episodes:
        expected = authors_way.segment(authors, shots, target)
        segmenter.clear_references()
        for image, mask in shots:
            segmenter.add_reference(image, mask)
        ours = segmenter.segment(target)
        np.testing.assert_array_equal(ours, expected)
        foreground += int(ours.sum())
    assert foreground > 0, "every episode gave an empty mask: the comparison would prove nothing"


def test_batched_masks_equal_the_authors_way(tiny_bundle, authors, episodes):
    segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    shots, _, _ = episodes[0]
    targets = [episode[1] for episode in episodes]
    segmenter.set_reference(*shots[0])
    ours = segmenter.segment_batch(targets, batch_size=3)
    for mask, target in zip(ours, targets):
        np.testing.assert_array_equal(mask, authors_way.segment(authors, shots, target))
