"""The authors' way, step by step on hand-made inputs (it is the parity tests' oracle)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from insid3.engine.bench import authors_way as aw  # noqa: E402


def unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_debias_removes_the_subspace_and_renormalises():
    basis = torch.tensor([[1.0], [0.0], [0.0]])
    out = aw.debias(unit([1.0, 1.0, 0.0], [2.0, 0.0, 2.0]), basis)
    assert torch.allclose(out, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-6)


def test_downsample_mask_bilinear_then_nearest_then_centroid():
    grid = (4, 4)  # R = 64, stride 16
    big = np.zeros((64, 64), bool)
    big[:32, :32] = True
    assert aw.downsample_mask(big, grid).reshape(grid)[:2, :2].all()
    assert aw.downsample_mask(big, grid).sum() == 4

    # 2 x 2 pixels at (7..8, 7..8): bilinear at the sample points sees nothing > 0.5, nearest
    # samples pixel (8, 8) of cell (0, 0).
    dot = np.zeros((64, 64), bool)
    dot[7:9, 7:9] = True
    small = aw.downsample_mask(dot, grid).reshape(grid)
    assert small.sum() == 1 and small[0, 0]

    # One pixel that neither bilinear nor nearest samples: the centroid's patch (y 40 // 16, x 20 // 16).
    lone = np.zeros((64, 64), bool)
    lone[40, 20] = True
    small = aw.downsample_mask(lone, grid).reshape(grid)
    assert small.sum() == 1 and small[2, 1]


def test_prototype_skips_empty_shots():
    shot1 = unit([1.0, 0.0], [0.0, 1.0])
    shot2 = unit([0.0, 1.0], [0.0, 1.0])
    proto = aw.prototype([shot1, shot2], [torch.tensor([True, False]), torch.tensor([False, False])])
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
    assert aw.backward_candidates(target, [reference], [in_first]).tolist() == [True, False]
    # 2 shots: ceil(2 / 2) = 1 vote suffices.
    assert aw.backward_candidates(target, [reference, reference], [in_first, in_second]).tolist() == [True, True]
    # 3 shots: 2 votes needed.
    votes = aw.backward_candidates(target, [reference] * 3, [in_first, in_second, in_second])
    assert votes.tolist() == [False, True]


def test_cluster_cuts_at_one_minus_tau():
    features = unit([1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.99, 0.1])
    labels = aw.cluster(features, tau=0.6)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert len(set(aw.cluster(features, tau=0.0001).tolist())) == 1  # threshold ~1: all merge up to D < 1


def test_aggregate_scores_clusters_against_the_seed():
    # Two clusters: {0, 1} holds all candidates and is the seed; {2, 3} has no candidate (a_k = 0).
    labels = np.array([0, 0, 1, 1])
    features = unit([1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0])
    proto = torch.tensor([1.0, 0.0])
    similarity = features @ proto
    candidate = torch.tensor([True, False, False, False])
    mask = aw.aggregate(labels, candidate, features, features, similarity, proto, merge_threshold=0.2)
    assert mask.tolist() == [True, True, False, False]  # seed's a = 1 however few of it are candidates
    assert not aw.aggregate(labels, torch.zeros(4, dtype=torch.bool), features, features, similarity, proto,
                            0.2).any()


def test_upsample_twice_bilinear():
    patch_mask = torch.tensor([True, False, False, False])
    mask = aw.upsample(patch_mask, (2, 2), 32, (10, 20))
    assert mask.shape == (10, 20) and mask.dtype == np.bool_
    # Inside the top-left quadrant only; bilinear interpolation rounds the corner that borders
    # the three off patches (the 32 x 32 step is 1 at 0..15 along the edges, less at the corner).
    assert not mask[5:, :].any() and not mask[:, 10:].any()
    assert mask[:3, :10].all() and mask[4, :7].all()
    assert not mask[4, 9] and not mask[3, 9]
