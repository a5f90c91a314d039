"""insid3.authors_way, the transcription every parity check compares with, step by step on
hand-made inputs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from insid3 import authors_way as aw  # noqa: E402  (needs torch)


def unit(*rows, dtype=torch.float32):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=dtype), dim=-1)


def test_debias_removes_the_subspace_and_renormalises():
    basis = torch.tensor([[1.0], [0.0], [0.0]])
    out = aw.debias(unit([1.0, 1.0, 0.0], [2.0, 0.0, 2.0]), basis)
    assert torch.allclose(out, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-6)
    shots = aw.debias(torch.stack([unit([1.0, 1.0, 0.0])] * 2), basis)  # any leading shape
    assert shots.shape == (2, 1, 3) and torch.allclose(shots[1, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_every_step_computes_in_the_dtype_it_is_given():
    features = unit([1.0, 2.0, 0.5], [0.0, 1.0, 3.0], dtype=torch.float64)
    debiased = aw.debias(features, torch.tensor([[0.0], [0.0], [1.0]], dtype=torch.float64))
    proto = aw.prototype(debiased[None], torch.tensor([[True, False]]))
    assert debiased.dtype == proto.dtype == aw.forward_similarity(debiased, proto).dtype == torch.float64


def test_downsample_mask_bilinear_then_nearest_then_centroid():
    grid = (4, 4)  # R = 64, stride 16
    big = torch.zeros((64, 64), dtype=torch.bool)
    big[:32, :32] = True
    small = aw.downsample_mask(big, grid)
    assert small.shape == grid and small[:2, :2].all() and small.sum() == 4

    # 2 x 2 pixels at (7..8, 7..8): bilinear at the sample points sees nothing > 0.5, nearest
    # samples pixel (8, 8) of cell (0, 0).
    dot = torch.zeros((64, 64), dtype=torch.bool)
    dot[7:9, 7:9] = True
    small = aw.downsample_mask(dot, grid)
    assert small.sum() == 1 and small[0, 0]

    # One pixel that neither bilinear nor nearest samples: the centroid's patch (y 40 // 16, x 20 // 16).
    lone = torch.zeros((64, 64), dtype=torch.bool)
    lone[40, 20] = True
    small = aw.downsample_mask(lone, grid)
    assert small.sum() == 1 and small[2, 1]


def test_prototype_skips_empty_shots():
    shots = torch.stack([unit([1.0, 0.0], [0.0, 1.0]), unit([0.0, 1.0], [0.0, 1.0])])
    proto = aw.prototype(shots, torch.tensor([[True, False], [False, False]]))
    assert torch.allclose(proto, torch.tensor([1.0, 0.0]))


def test_forward_candidates_fall_back_to_the_top_decile():
    similarity = -torch.arange(20, dtype=torch.float32) - 1  # all negative
    forward = aw.forward_candidates(similarity)
    assert forward.sum() == 2 and forward[:2].all()
    assert aw.forward_candidates(torch.tensor([0.5, -0.1])).tolist() == [True, False]


def test_backward_candidates_majority_of_shots():
    target = unit([1.0, 0.0], [0.0, 1.0])
    reference = unit([1.0, 0.0], [0.0, 1.0])
    in_first = torch.tensor([True, False])
    in_second = torch.tensor([False, True])
    # 1 shot: patch 0's nearest neighbour is reference patch 0, inside the mask.
    assert aw.backward_candidates(target, reference[None], in_first[None]).tolist() == [True, False]
    # 2 shots: ceil(2 / 2) = 1 vote suffices.
    both = aw.backward_candidates(target, torch.stack([reference] * 2), torch.stack([in_first, in_second]))
    assert both.tolist() == [True, True]
    # 3 shots: 2 votes needed.
    votes = aw.backward_candidates(target, torch.stack([reference] * 3), torch.stack([in_first, in_second, in_second]))
    assert votes.tolist() == [False, True]


def test_backward_ties_take_the_first_reference_patch():
    target = unit([1.0, 0.0])
    reference = unit([1.0, 0.0], [1.0, 0.0])  # both reference patches tie
    assert aw.backward_candidates(target, reference[None], torch.tensor([[False, True]])).tolist() == [False]
    assert aw.backward_candidates(target, reference[None], torch.tensor([[True, False]])).tolist() == [True]


def test_cluster_cuts_at_one_minus_tau():
    features = unit([1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.99, 0.1])
    labels = aw.cluster(features, tau=0.6)
    assert labels.dtype == torch.int64 and labels[0] == labels[1] != labels[2] == labels[3]
    assert len(set(aw.cluster(features, tau=0.0001).tolist())) == 1  # threshold ~1: all merge up to D < 1
    assert aw.cluster(unit([1.0, 0.0]), tau=0.6).tolist() == [0]  # one patch, one cluster


def test_agglomerative_labels_merge_strictly_below_the_threshold():
    distances = np.array([[0.0, 0.5, 1.0], [0.5, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert len(set(aw.agglomerative_labels(distances, 0.5))) == 3  # 0.5 is not below 0.5
    assert len(set(aw.agglomerative_labels(distances, np.nextafter(0.5, 1)))) == 2


def test_same_partition_ignores_the_numbering():
    assert aw.same_partition([0, 0, 1, 2], [5, 5, 3, 4])
    assert not aw.same_partition([0, 0, 1, 2], [0, 1, 1, 2])
    assert not aw.same_partition([0, 0, 1], [0, 0, 0])


def test_aggregate_scores_clusters_against_the_seed():
    # Two clusters: {0, 1} holds all candidates and is the seed; {2, 3} has no candidate (a_k = 0).
    labels = torch.tensor([0, 0, 1, 1])
    features = unit([1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0])
    proto = torch.tensor([1.0, 0.0])
    similarity = features @ proto
    candidate = torch.tensor([True, False, False, False])
    mask = aw.aggregate(labels, candidate, features, features, similarity, proto, merge_threshold=0.2)
    assert mask.tolist() == [True, True, False, False]  # seed's a = 1 however few of it are candidates
    assert not aw.aggregate(labels, torch.zeros(4, dtype=torch.bool), features, features, similarity, proto,
                            0.2).any()


def test_the_merge_threshold_is_rounded_to_float32_as_the_authors():
    # -1e-160 is -0.0 in float32: a score of 0 is not above it, whatever the scores' dtype.
    for dtype in (torch.float32, torch.float64):
        assert aw.above_merge_threshold(torch.tensor([0.0, 1e-30], dtype=dtype), -1e-160).tolist() == [False, True]
    # 0.2 is 0.2000000030 in float32: a float64 score of 0.2 + 1e-9 is above 0.2 but not above that.
    above = aw.above_merge_threshold(torch.tensor([0.2 + 1e-9, 0.2 + 1e-8], dtype=torch.float64), 0.2)
    assert above.tolist() == [False, True]
    # float32 scores: exactly torch's own comparison with a Python float, as the authors wrote it.
    scores = torch.from_numpy(np.linspace(0.19999, 0.20001, 201, dtype=np.float32))
    assert torch.equal(aw.above_merge_threshold(scores, 0.2), scores > 0.2)


def test_upsample_twice_bilinear():
    patch_mask = torch.tensor([[True, False], [False, False]])
    mask = aw.upsample(patch_mask, 32, (10, 20))
    assert mask.shape == (10, 20) and mask.dtype == torch.bool
    # Inside the top-left quadrant only; bilinear interpolation rounds the corner that borders
    # the three off patches (the 32 x 32 step is 1 at 0..15 along the edges, less at the corner).
    assert not mask[5:, :].any() and not mask[:, 10:].any()
    assert mask[:3, :10].all() and mask[4, :7].all()
    assert not mask[4, 9] and not mask[3, 9]


def test_segment_features_returns_the_empty_mask_unclustered_without_candidates(monkeypatch):
    import insid3.authors_way.episode as episode

    monkeypatch.setattr(episode, "cluster", lambda *args: pytest.fail("clustered without a candidate"))
    # Every target patch is nearest to reference patch 1, outside the mask: no backward candidate.
    features = torch.stack([unit([0.0, 1.0, 0.0], [1.0, 0.0, 0.0]), unit([1.0, 0.1, 0.0], [1.0, 0.0, 0.1])])
    masks = torch.zeros((1, 32, 32), dtype=torch.bool)
    masks[0, :, :16] = True  # the left patch of the 1 x 2 grid
    mask = aw.segment_features(features, masks, torch.zeros((3, 0)), tau=0.6, merge_threshold=0.2, grid=(1, 2),
                               resolution=32, original_size=(8, 16))
    assert mask.shape == (8, 16) and not mask.any()
