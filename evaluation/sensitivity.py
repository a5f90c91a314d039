"""How much the positional basis moves masks and mIoU: two bundles of the same weights and
resolution (e.g. the eval-mode basis and `insid3-export --rope-rescale-seed 0`) on the same
episodes.

    insid3 eval sensitivity --bundle A --other B --dataset coco --data-root R --episodes 48

Per episode: the IoU between the two predictions (1 when both are empty) and the share of grid
pixels on which they differ; overall: each bundle's mIoU and their difference.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import SettingsError
from insid3.evaluation.datasets import build_benchmark
from insid3.evaluation.features_cache import FeatureCache
from insid3.evaluation.metrics import IoUMeter
from insid3.evaluation.runner import EpisodeRunner
from insid3.evaluation.sampling import episode_rng


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@dataclass(frozen=True, kw_only=True)
class SensitivitySettings:
    bundle: Path
    other: Path
    data_root: Path
    dataset: str = "coco"
    fold: int | None = None  # None: the dataset's first
    shots: int = 1
    episodes: int = 48
    backend: str = "auto"


def compare(settings: SensitivitySettings) -> dict:
    first = Segmenter.from_bundle(settings.bundle, backend=settings.backend)
    second = Segmenter.from_bundle(settings.other, backend=settings.backend)
    a, b = first.bundle.metadata, second.bundle.metadata
    if (a.arch, a.resolution, a.weights) != (b.arch, b.resolution, b.weights):
        raise SettingsError("the two bundles must share their weights, architecture and resolution (only the basis differs)")
    s = first.hyperparameters.svd_components
    basis_a, basis_b = first.bundle.positional_basis()[:, :s], second.bundle.positional_basis()[:, :s]
    # 1 when the two s-dimensional subspaces removed by debiasing coincide, 0 when orthogonal
    overlap = float(np.sum((basis_a.astype(np.float64).T @ basis_b.astype(np.float64)) ** 2) / s) if s else 1.0
    benchmark = build_benchmark(settings.dataset, str(settings.data_root), settings.fold, settings.shots)
    results = []
    for segmenter in (first, second):
        runner = EpisodeRunner(segmenter, benchmark, FeatureCache(segmenter.xp), keep_predictions=True)
        meter = IoUMeter(benchmark.class_ids, benchmark.num_classes)
        kept = []
        for result in runner.run(islice(benchmark.episodes(episode_rng()), settings.episodes)):
            meter.update(result.counts, result.episode.class_id)
            kept.append(result.prediction)
        results.append((meter.miou(), kept))
    (miou_a, masks_a), (miou_b, masks_b) = results
    ious = [mask_iou(x, y) for x, y in zip(masks_a, masks_b)]
    changed = [float(np.count_nonzero(x != y)) / x.size for x, y in zip(masks_a, masks_b)]
    return {
        "dataset": settings.dataset, "fold": settings.fold, "shots": settings.shots, "episodes": len(ious),
        "bundle": str(settings.bundle), "other": str(settings.other), "backend": first.backend.name,
        "svd_components": s, "subspace_overlap": overlap,
        "miou_bundle": miou_a, "miou_other": miou_b, "miou_difference": miou_b - miou_a,
        "mask_iou_median": statistics.median(ious), "mask_iou_mean": float(np.mean(ious)), "mask_iou_min": min(ious),
        "episodes_identical": sum(x == 0 for x in changed), "pixels_changed_mean": float(np.mean(changed)),
    }
