"""Segmenter.segment_concepts: one backbone pass and one clustering for many concepts, each mask
bit for bit segment()'s; the label map's overlap rule and ties; instances."""

import dataclasses

import numpy as np
import pytest
from support.scenes import example_shot

from insid3 import kernels
from insid3.engine import Segmenter
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.concepts import ConceptMask, ConceptsResult
from insid3.errors import NoReferenceError, SettingsError


@pytest.fixture(scope="module")
def concepts(segmenter, references):
    """The three concepts (conftest's references), the second with two shots, and a fourth: the
    first's concept from another example (so that two concepts claim the same clusters)."""
    return {**references, "ellipse-too": segmenter.encode_reference([example_shot(40, 0)])}


@pytest.fixture(scope="module")
def targets():
    return [draw_scene(seed, (110 + 7 * seed, 150), concept=seed % 3).image for seed in range(4)]


def test_each_mask_is_segment_alone_bit_for_bit(segmenter, concepts, targets, monkeypatch):
    clusterings = []
    real = kernels.average_linkage_clusters
    monkeypatch.setattr(kernels, "average_linkage_clusters", lambda *a, **k: clusterings.append(1) or real(*a, **k))
    for target in targets:
        before = dict(segmenter.images_encoded)
        clusterings.clear()
        result = segmenter.segment_concepts(target, concepts)
        assert segmenter.images_encoded["target"] == before["target"] + 1  # one backbone pass
        assert len(clusterings) == 1  # one clustering for the four concepts
        assert result.names == tuple(concepts) and [c.label for c in result] == [1, 2, 3, 4]
        for concept in result:
            alone = segmenter.segment(target, concepts[concept.name])
            assert concept.mask.dtype == bool and concept.mask.shape == target.shape[:2]
            np.testing.assert_array_equal(concept.mask, alone)
            assert set(concept.timings_ms) == {"matching", "aggregation", "upsample", "refine"}


def test_the_stream_gives_the_same_results(segmenter, concepts, targets):
    prepared = [segmenter.prepare(target) for target in targets]
    streamed = list(segmenter.segment_concepts_stream(iter(prepared), concepts, batch_size=3))
    assert [item for item, _ in streamed] == prepared
    for target, (_, result) in zip(targets, streamed):
        for concept in result:
            np.testing.assert_array_equal(concept.mask, segmenter.segment(target, concepts[concept.name]))


def test_label_map_follows_the_masks_and_exact_scores_decide_overlaps(segmenter, concepts, targets):
    overlapping = 0
    for target in targets:
        result = segmenter.segment_concepts(target, concepts)
        label = result.label_map()
        assert label.dtype == np.uint8 and label.shape == target.shape[:2]
        stack = np.stack([c.mask for c in result])
        np.testing.assert_array_equal(label > 0, stack.any(axis=0))  # labelled exactly where some mask is
        for concept in result:  # a pixel goes to a concept whose mask holds it
            assert concept.mask[label == concept.label].all()
        alone = stack.sum(axis=0) == 1
        np.testing.assert_array_equal(label[alone], np.argmax(stack, axis=0)[alone] + 1)
        claims = sum(c.clusters.astype(int) for c in result)
        for concept in result:  # clusters kept by two concepts have exact scores
            assert concept.exact[concept.clusters & (claims >= 2)].all()
            assert concept.score_low.dtype == np.float32 and np.all(concept.score_low <= concept.score_high)
        overlapping += int((claims >= 2).sum())
    assert overlapping  # the two ellipse concepts did meet


def test_bounded_scores_of_contested_clusters_are_computed_exactly(segmenter, concepts, targets, monkeypatch):
    """Widen every range pruned_aggregate reports: the clusters two concepts keep get their exact
    scores back (kernels.exact_cluster_scores), and the label map does not change."""
    plain = [segmenter.segment_concepts(target, concepts) for target in targets]
    real = kernels.pruned_aggregate

    def widened(**arguments):
        result = real(**arguments)
        return dataclasses.replace(result, score_low=result.score_low - 1, score_high=result.score_high + 1)

    monkeypatch.setattr(kernels, "pruned_aggregate", widened)
    for target, expected in zip(targets, plain):
        result = segmenter.segment_concepts(target, concepts)
        claims = sum(c.clusters.astype(int) for c in result)
        for concept, before in zip(result, expected):
            contested = concept.clusters & (claims >= 2)
            assert concept.exact[contested].all() and not concept.exact[~contested].any()
            np.testing.assert_array_equal(concept.score_low[contested], before.score_low[contested])
        np.testing.assert_array_equal(result.label_map(), expected.label_map())


def _hand_made(masks, clusters, scores, labels, grid):
    concepts = []
    for index, (mask, keep, score) in enumerate(zip(masks, clusters, scores), start=1):
        score = np.asarray(score, np.float32)
        concepts.append(ConceptMask(name=f"c{index}", label=index, mask=np.asarray(mask, bool), patch_mask=None,
                                    clusters=np.asarray(keep, bool), seed=0, score_low=score, score_high=score))
    size = np.asarray(masks[0]).shape
    return ConceptsResult(concepts=tuple(concepts), labels=np.asarray(labels), patch_grid=grid, original_size=size)


def test_label_map_rule_and_ties_on_hand_made_concepts():
    # Patch grid 1 x 2 on a 2 x 4 image: cluster 0 on the left half, cluster 1 on the right.
    everywhere = np.ones((2, 4), bool)
    left = np.zeros((2, 4), bool)
    left[:, :2] = True
    # c1 keeps both clusters (scores 0.5, 0.3), c2 the right one (0.4), c3 both (0.5, 0.4): ties.
    result = _hand_made([everywhere, ~left, everywhere], [[1, 1], [0, 1], [1, 1]],
                        [[0.5, 0.3], [0.0, 0.4], [0.5, 0.4]], [0, 1], (1, 2))
    np.testing.assert_array_equal(result.label_map(), [[1, 1, 2, 2], [1, 1, 2, 2]])
    # A concept whose mask reaches a pixel whose cluster it does not keep loses to one that keeps it,
    # even with a lower score, and wins where nobody else is.
    result = _hand_made([everywhere, everywhere], [[0, 1], [1, 0]], [[0.0, 0.9], [0.1, 0.0]], [0, 1], (1, 2))
    np.testing.assert_array_equal(result.label_map(), [[2, 2, 1, 1], [2, 2, 1, 1]])
    result = _hand_made([left, everywhere], [[0, 0], [0, 0]], [[0, 0], [0, 0]], [0, 1], (1, 2))
    np.testing.assert_array_equal(result.label_map(), [[1, 1, 2, 2], [1, 1, 2, 2]])  # neither keeps: the first


def test_past_255_concepts_the_label_map_is_uint16():
    count = 300
    masks = [np.zeros((1, count), bool) for _ in range(count)]
    for index, mask in enumerate(masks):
        mask[0, index] = True
    result = _hand_made(masks, [[1]] * count, [[0.5]] * count, [0], (1, 1))
    label = result.label_map()
    assert label.dtype == np.uint16
    np.testing.assert_array_equal(label[0], np.arange(1, count + 1))


def test_instances_are_8_connected_components_with_box_and_area():
    mask = np.zeros((6, 8), bool)
    mask[0:2, 0:2] = True  # a 2 x 2 square...
    mask[2, 2] = True  # ...joined diagonally: one component of 5 pixels
    mask[4:6, 5:8] = True  # 6 pixels
    mask[0, 7] = True  # 1 pixel
    result = _hand_made([mask, np.zeros_like(mask)], [[1], [0]], [[0.5], [0.0]], [0], (1, 1))
    found = result.instances()
    assert [(i.concept, i.label, i.bbox, i.area) for i in found] == [
        ("c1", 1, (0, 0, 3, 3), 5), ("c1", 1, (7, 0, 1, 1), 1), ("c1", 1, (5, 4, 3, 2), 6)]
    np.testing.assert_array_equal(sum(i.mask.astype(int) for i in found), mask)
    for instance in found:
        assert instance.mask.sum() == instance.area
    assert [i.area for i in result.instances(min_area=5)] == [5, 6]
    with pytest.raises(ValueError, match="min_area must be >= 0"):
        result.instances(min_area=-1)


def test_bad_concepts_are_one_clear_error(segmenter, concepts, targets, tiny_bundle):
    with pytest.raises(NoReferenceError, match="at least one concept"):
        segmenter.segment_concepts(targets[0], {})
    with pytest.raises(SettingsError, match="expected a Reference"):
        segmenter.segment_concepts(targets[0], {"cat": "cat.png"})
    with pytest.raises(SettingsError, match="non-empty strings"):
        segmenter.segment_concepts(targets[0], {"": concepts["ellipse"]})
    other = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", svd_components=8)
    with pytest.raises(SettingsError, match="another bundle or debias frame"):
        other.segment_concepts(targets[0], {"ellipse": concepts["ellipse"]})
    with pytest.raises(KeyError, match="no concept named 'dog'"):
        segmenter.segment_concepts(targets[0], {"ellipse": concepts["ellipse"]})["dog"]
