"""insid3-eval's metric and comparison grid: the protocol's worked examples, the authors' float32
accumulation, unsampled classes counting 0, FB-IoU, and torch's legacy nearest for the ground truth."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support import eval_layouts as layouts

from insid3.evaluation.datasets import build_benchmark
from insid3.evaluation.grid import on_grid, prediction_size
from insid3.evaluation.metrics import Counts, IoUMeter, intersection_union
from insid3.evaluation.sampling import episode_rng


def worked_example():
    gt = np.zeros((8, 8), bool)
    gt[0:4, 0:4] = True
    ignore = np.zeros((8, 8), np.float32)
    ignore[4, 0:4] = 1
    pred = np.zeros((8, 8), bool)
    pred[0:5, 0:4] = True
    return pred, gt, ignore


def test_the_worked_example_with_and_without_the_ignore_map():
    pred, gt, ignore = worked_example()
    assert intersection_union(pred, gt, ignore) == Counts(intersection=(44, 16), union=(44, 16))
    assert intersection_union(pred, gt) == Counts(intersection=(44, 16), union=(48, 20))


def test_counts_equal_the_authors_histc_formulation():
    rng = np.random.default_rng(3)
    for _ in range(5):
        pred, gt = rng.random((2, 33, 21)) > 0.5
        ignore = (rng.random((33, 21)) > 0.8) & ~gt
        p, g = torch.from_numpy(pred).float(), torch.from_numpy(gt).float() + 255 * torch.from_numpy(ignore).float()
        p[g == 255] = 255
        inter = torch.histc(p[p == g], bins=2, min=0, max=1)
        union = torch.histc(p, bins=2, min=0, max=1) + torch.histc(g, bins=2, min=0, max=1) - inter
        counts = intersection_union(pred, gt, ignore.astype(np.float32))
        assert list(counts.intersection) == inter.int().tolist() and list(counts.union) == union.int().tolist()


def test_an_empty_agreement_counts_zero():
    pred = np.ones((4, 4), bool)
    assert intersection_union(pred, ~pred).intersection == (0, 0)


def test_the_meter_accumulates_in_float32_in_episode_order():
    meter = IoUMeter([0], 1)
    big = Counts(intersection=(2**24, 0), union=(2**24, 1))
    meter.update(big, 0)
    meter.update(Counts(intersection=(1, 0), union=(1, 0)), 0)
    assert meter.intersection[0, 0] == np.float32(2**24)  # 2**24 + 1 rounds back in float32
    assert meter.intersection.dtype == np.float32
    torch_buffer = torch.zeros(2, 1)
    for counts in (big, Counts(intersection=(1, 0), union=(1, 0))):
        torch_buffer.index_add_(1, torch.tensor(0), torch.tensor(counts.intersection, dtype=torch.float32)[:, None])
    assert np.array_equal(meter.intersection, torch_buffer.numpy())


def test_miou_counts_unsampled_classes_as_zero_and_fb_iou_has_no_guard():
    meter = IoUMeter([1, 3, 5, 7], 8)
    meter.update(Counts(intersection=(10, 5), union=(12, 10)), 3)
    assert meter.miou() == pytest.approx(100 * 0.5 / 4)
    assert meter.fb_iou() == pytest.approx(100 * (10 / 12 + 5 / 10) / 2, rel=1e-6)
    assert [row["iou"] for row in meter.per_class()] == [0.0, 50.0, 0.0, 0.0]
    assert np.isnan(IoUMeter([0], 1).fb_iou())


def test_the_meter_refuses_a_class_outside_its_columns():
    with pytest.raises(ValueError, match="outside"):
        IoUMeter([0, 1], 2).update(Counts((0, 0), (0, 0)), 2)


def test_synthetic_coco_with_the_oracle_prediction_scores_60(tmp_path):
    """The protocol's example: fold 0, 20 episodes, prediction = the ground truth on the grid:
    12 of the 20 classes are drawn, so mIoU 60 and FB-IoU 100."""
    layouts.write_coco(tmp_path)
    benchmark = build_benchmark("coco", str(tmp_path), 0, 1)
    meter = IoUMeter(benchmark.class_ids, benchmark.num_classes)
    for episode in islice(benchmark.episodes(episode_rng()), 20):
        gt = on_grid(benchmark.load(episode.target, episode.class_id).mask, "square", 224)
        meter.update(intersection_union(gt, gt), episode.class_id)
    assert round(meter.miou(), 1) == 60.0 and round(meter.fb_iou(), 1) == 100.0


@pytest.mark.parametrize("size", [(30, 40), (1, 7), (375, 500), (333, 1025), (512, 512)])
@pytest.mark.parametrize("resolution", [224, 512, 1024])
def test_the_ground_truth_goes_to_the_grid_with_torchs_legacy_nearest(size, resolution):
    mask = np.random.default_rng(0).random(size) > 0.5
    expected = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(resolution, resolution), mode="nearest")
    assert np.array_equal(on_grid(mask, "square", resolution), expected[0, 0].numpy() > 0.5)


def test_the_original_protocol_keeps_the_ground_truth_and_names_sizes():
    mask = np.zeros((5, 9), bool)
    assert on_grid(mask, "original", 224) is mask
    assert prediction_size("square", 224, (5, 9)) == (224, 224)
    assert prediction_size("original", 224, (5, 9)) == (5, 9)
    with pytest.raises(ValueError, match="unknown grid protocol"):
        prediction_size("bogus", 224, (5, 9))
