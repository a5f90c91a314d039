"""Every mask's quality record (engine/runtime/quality.py): its numbers against an unpruned
recomputation of doc §6-§8, the mask's own area and components, the score's definition, the
same record whichever concepts share the pass, `above(S)` and the flags."""

import dataclasses
import json

import numpy as np
import pytest

from insid3 import kernels
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.quality import FLAGS, MaskQuality, QualityThresholds, count_components
from insid3.kernels.aggregation import cluster_prototypes, mean_forward_similarity, row_dots
from insid3.kernels.matching import backward_candidates, backward_votes


@pytest.fixture(scope="module")
def targets():
    return [draw_scene(seed, (110 + 7 * seed, 150), concept=seed % 3).image for seed in range(5)]


def unpruned(segmenter, target, reference):
    """Doc §6-§8 with every patch voted (no pruning): seed, its similarity and score, counts."""
    bundle, hp = segmenter.bundle, segmenter.hyperparameters
    basis = bundle.positional_basis()[:, : hp.svd_components]
    frame = kernels.debias_frame(np.ascontiguousarray(basis), hp.svd_components)
    features = segmenter.encode([segmenter.prepare(target)])[0]
    debiased = kernels.debiased_coordinates(features, frame)
    similarity = kernels.forward_similarity(debiased, reference.prototype)
    forward = kernels.forward_candidates(similarity)
    votes = backward_votes(debiased, reference.debiased, reference.patch_masks)
    candidates = forward & backward_candidates(votes, reference.shots)
    confirmed = int(candidates.sum())
    if not confirmed:
        return None, None, None, int(forward.sum()), 0
    labels = kernels.average_linkage_clusters(features, hp.tau).astype(np.int64)
    count = int(labels.max()) + 1
    hit = np.unique(labels[candidates])
    to_prototype = row_dots(cluster_prototypes(debiased, labels, hit, count), reference.prototype)
    seed = int(hit[np.argmax(to_prototype)])
    cross = mean_forward_similarity(labels, similarity, np.bincount(labels, minlength=count))[seed]
    original = cluster_prototypes(features, labels, np.asarray([seed]), count)[0]
    return seed, float(to_prototype.max()), float(cross * (original @ original)), int(forward.sum()), confirmed


def test_the_record_is_doc_8_computed_without_pruning(segmenter, references, targets):
    seen_seed = 0
    for target in targets:
        result = segmenter.segment_concepts(target, references)
        for concept in result:
            quality = concept.quality
            seed, similarity, seed_score, forward, confirmed = unpruned(segmenter, target, references[concept.name])
            assert concept.seed == seed
            assert quality.forward_patches == forward and quality.confirmed_patches == confirmed
            assert quality.confirmed_share == pytest.approx(confirmed / forward)
            if seed is None:
                assert quality.seed_similarity is None and quality.seed_score is None and quality.score == 0
                continue
            seen_seed += 1
            assert quality.seed_similarity == pytest.approx(similarity, abs=1e-6)
            assert quality.seed_score == pytest.approx(seed_score, abs=1e-6)
            threshold = np.float32(segmenter.hyperparameters.merge_threshold)
            assert quality.seed_margin == pytest.approx(quality.seed_score - float(threshold), abs=1e-7)
            assert (quality.seed_margin > 0) == bool(concept.patch_mask.any())  # the seed keeps itself or nothing
    assert seen_seed >= 5


def test_area_components_and_score_describe_the_mask(segmenter, references, targets):
    for target in targets:
        result = segmenter.segment_concepts(target, references)
        instances = result.instances()
        for concept in result:
            quality = concept.quality
            assert quality.area_fraction == concept.mask.sum() / concept.mask.size
            assert quality.components == sum(1 for i in instances if i.concept == concept.name)
            if concept.mask.any():
                assert quality.score == min(1.0, max(0.0, quality.seed_similarity))
            else:
                assert quality.score == 0.0 and quality.components == 0
            assert 0.0 <= quality.score <= 1.0
            assert result.quality[concept.name] is quality


def test_a_concept_has_the_same_record_alone_or_with_others(segmenter, references, targets):
    for target in targets[:3]:
        together = segmenter.segment_concepts(target, references)
        for name, reference in references.items():
            alone = segmenter.segment_concepts(target, {name: reference})
            assert alone[name].quality == together[name].quality


def test_the_record_is_json_in_field_order(segmenter, references, targets):
    quality = segmenter.segment_concepts(targets[0], references)["ellipse"].quality
    record = json.loads(json.dumps(quality.to_json()))
    assert list(record) == [f.name for f in dataclasses.fields(MaskQuality)]
    assert MaskQuality(**record) == quality


def test_above_empties_exactly_the_concepts_below_the_score(segmenter, references, targets):
    result = segmenter.segment_concepts(targets[1], references)
    scores = sorted(q.score for q in result.quality.values())
    threshold = scores[1]  # the lowest-scoring concept goes, the others stay
    kept = result.above(threshold)
    for before, after in zip(result, kept):
        assert after.quality == before.quality
        if before.quality.score < threshold:
            assert not after.mask.any() and not after.patch_mask.any() and not after.clusters.any()
        else:
            np.testing.assert_array_equal(after.mask, before.mask)
    below = [c.name for c in result if c.quality.score < threshold]
    assert below and not np.isin(kept.label_map(), [result[n].label for n in below]).any()
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(result.above(0.0), result))


def test_count_components_is_eight_connected_on_any_crop():
    mask = np.zeros((40, 50), bool)
    assert count_components(mask) == 0
    mask[3, 4] = mask[4, 5] = True  # corner-touching: one
    mask[30:33, 40:45] = True
    mask[20, 0] = True
    assert count_components(mask) == 3


def record(**changes):
    base = dict(score=0.8, seed_similarity=0.8, seed_score=0.5, seed_margin=0.3, confirmed_share=0.5,
                forward_patches=10, confirmed_patches=5, area_fraction=0.2, components=1)
    return MaskQuality(**{**base, **changes})


def test_flags_follow_their_thresholds():
    rules = QualityThresholds()
    assert rules.flags(record()) == ()
    assert rules.flags(record(area_fraction=0.0, components=0, score=0.0)) == ("empty", "low-score")
    assert rules.flags(record(area_fraction=0.0005)) == ("tiny",)
    assert rules.flags(record(area_fraction=0.95)) == ("huge",)
    assert rules.flags(record(components=6)) == ("fragmented",)
    assert rules.flags(record(components=5)) == ()
    assert rules.flags(record(score=0.29)) == ("low-score",)
    strict = QualityThresholds(tiny=0.3, huge=0.3, fragmented=1, low_score=0.9)
    assert strict.flags(record(components=2)) == ("tiny", "fragmented", "low-score")
    assert set(strict.flags(record(area_fraction=1.0, components=2, score=0.0))) <= set(FLAGS)
    with pytest.raises(ValueError):
        QualityThresholds(tiny=0.5, huge=0.1)
    with pytest.raises(ValueError):
        QualityThresholds(fragmented=0)
