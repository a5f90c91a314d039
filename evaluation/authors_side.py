"""The same episodes scored the authors' way: insid3.authors_way (torch eager backbone, every
reference re-encoded with its target, sklearn clustering, per-cluster loops), one episode at a
time, with no cache, as their evaluation script runs. It is the yardstick of insid3-eval's
numbers (tests) and the baseline of its speed (insid3.evaluation.speed).

Needs torch (the `export` extra) and scikit-learn (`bench` or `test`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from insid3.authors_way import AuthorsModel, encode_together, preprocess_image, preprocess_shot, segment_features
from insid3.errors import ReferenceMaskError
from insid3.evaluation.datasets.base import SegmentationBenchmark
from insid3.evaluation.episode import Episode
from insid3.evaluation.grid import on_grid, prediction_size
from insid3.evaluation.metrics import intersection_union
from insid3.evaluation.runner import EMPTY_REFERENCE_NOTE, EpisodeResult


def score_episode(model: AuthorsModel, benchmark: SegmentationBenchmark, episode: Episode, protocol: str) -> EpisodeResult:
    target = benchmark.load(episode.target, episode.class_id)
    references = [benchmark.load(item, episode.class_id) for item in episode.references]
    grid = prediction_size(protocol, model.resolution, target.rgb.shape[:2])
    try:
        shots = [preprocess_shot(model, r.rgb, r.mask) for r in references]
    except ReferenceMaskError:
        shots = None
    if shots is None:
        prediction, note = np.zeros(grid, dtype=bool), EMPTY_REFERENCE_NOTE
    else:
        prepared_target = preprocess_image(model, target.rgb)
        features = encode_together(model, [image for image, _ in shots] + [prepared_target])
        hp = model.hyperparameters
        mask = segment_features(
            features, torch.stack([m for _, m in shots]), model.basis, tau=hp.tau,
            merge_threshold=hp.merge_threshold, grid=model.patch_grid, resolution=model.resolution, original_size=grid,
        )
        prediction, note = mask.cpu().numpy(), None
    gt = on_grid(target.mask, protocol, model.resolution)
    ignore = None if target.ignore is None else on_grid(target.ignore, protocol, model.resolution)
    return EpisodeResult(episode, intersection_union(prediction, gt, ignore), note)


def run_authors_way(
    model: AuthorsModel, benchmark: SegmentationBenchmark, episodes: Iterable[Episode], protocol: str = "square"
) -> Iterator[EpisodeResult]:
    for episode in episodes:
        yield score_episode(model, benchmark, episode, protocol)
