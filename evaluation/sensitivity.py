"""How much the positional basis moves masks and mIoU: two bundles of the same weights and
resolution (e.g. the eval-mode basis and `insid3-export --rope-rescale-seed 0`) on the same
episodes.

    python -m insid3.evaluation.sensitivity --bundle A --other B --dataset coco --data-root R --episodes 48

Per episode: the IoU between the two predictions (1 when both are empty) and the share of grid
pixels on which they differ; overall: each bundle's mIoU and their difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from itertools import islice
from pathlib import Path

import numpy as np

from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import Insid3Error, SettingsError
from insid3.evaluation.datasets import REGISTRY, build_benchmark
from insid3.evaluation.features_cache import FeatureCache
from insid3.evaluation.metrics import IoUMeter
from insid3.evaluation.report import print_figures
from insid3.evaluation.runner import EpisodeRunner
from insid3.evaluation.sampling import episode_rng


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def compare(args: argparse.Namespace) -> dict:
    first = Segmenter.from_bundle(args.bundle, backend=args.backend)
    second = Segmenter.from_bundle(args.other, backend=args.backend)
    a, b = first.bundle.metadata, second.bundle.metadata
    if (a.arch, a.resolution, a.weights) != (b.arch, b.resolution, b.weights):
        raise SettingsError("the two bundles must share their weights, architecture and resolution (only the basis differs)")
    s = first.hyperparameters.svd_components
    basis_a, basis_b = first.bundle.positional_basis()[:, :s], second.bundle.positional_basis()[:, :s]
    # 1 when the two s-dimensional subspaces removed by debiasing coincide, 0 when orthogonal
    overlap = float(np.sum((basis_a.astype(np.float64).T @ basis_b.astype(np.float64)) ** 2) / s) if s else 1.0
    benchmark = build_benchmark(args.dataset, str(args.data_root), args.fold, args.shots)
    results = []
    for segmenter in (first, second):
        runner = EpisodeRunner(segmenter, benchmark, FeatureCache(segmenter.xp), keep_predictions=True)
        meter = IoUMeter(benchmark.class_ids, benchmark.num_classes)
        kept = []
        for result in runner.run(islice(benchmark.episodes(episode_rng()), args.episodes)):
            meter.update(result.counts, result.episode.class_id)
            kept.append(result.prediction)
        results.append((meter.miou(), kept))
    (miou_a, masks_a), (miou_b, masks_b) = results
    ious = [mask_iou(x, y) for x, y in zip(masks_a, masks_b)]
    changed = [float(np.count_nonzero(x != y)) / x.size for x, y in zip(masks_a, masks_b)]
    return {
        "dataset": args.dataset, "fold": args.fold, "shots": args.shots, "episodes": len(ious),
        "bundle": str(args.bundle), "other": str(args.other), "backend": first.backend.name,
        "svd_components": s, "subspace_overlap": overlap,
        "miou_bundle": miou_a, "miou_other": miou_b, "miou_difference": miou_b - miou_a,
        "mask_iou_median": statistics.median(ious), "mask_iou_mean": float(np.mean(ious)), "mask_iou_min": min(ious),
        "episodes_identical": sum(x == 0 for x in changed), "pixels_changed_mean": float(np.mean(changed)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m insid3.evaluation.sensitivity", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="the reference bundle (e.g. eval-mode basis)")
    parser.add_argument("--other", type=Path, required=True, help="the same weights with another basis")
    parser.add_argument("--dataset", default="coco", choices=list(REGISTRY), help="benchmark")
    parser.add_argument("--data-root", type=Path, required=True, help="datasets folder")
    parser.add_argument("--fold", type=int, default=None, help="fold (default: the dataset's first)")
    parser.add_argument("--shots", type=int, default=1, help="references per episode")
    parser.add_argument("--episodes", type=int, default=48, help="first N episodes")
    parser.add_argument("--backend", default="auto", help="backend for both")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.shots < 1:
        parser.error("--episodes and --shots must be >= 1")
    try:
        figures = compare(args)
    except Insid3Error as exc:
        print(f"insid3-eval sensitivity: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insid3-eval sensitivity: interrupted", file=sys.stderr)
        return 130
    print_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
