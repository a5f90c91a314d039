"""SPair-71k through the engine: every pair's keypoints matched and scored by PCK.

Pairs are taken in the list's order, a window at a time: the window's distinct images go
through the backbone in one call (the backend splits it by its max batch), then each pair's
source keypoints are matched in its target (Segmenter.matcher, the same path as
Segmenter.match) and its per-pair PCK is added to the meter. Keypoints are used as stored,
without the API's bounds check: the authors clamp them to the grid, and so does the snapping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from tqdm import tqdm

from insid3.engine.runtime.correspondence import MatchOptions
from insid3.engine.runtime.segmenter import Segmenter
from insid3.evaluation.datasets.spair import KeypointPair, SpairDataset
from insid3.evaluation.pck import PckMeter, pair_pck


@dataclass(frozen=True)
class SpairOptions:
    debiased: bool = True
    svd_components: int | None = None  # None: the Segmenter's
    batch_size: int = 8  # images per backbone call (two per pair at most)
    pairs: int | None = None  # the first N pairs; None: all
    progress: bool = True


def _windows(pairs: list[KeypointPair], size: int) -> Iterator[list[KeypointPair]]:
    source = iter(pairs)
    while window := list(islice(source, size)):
        yield window


def evaluate_spair(segmenter: Segmenter, dataset: SpairDataset, options: SpairOptions) -> PckMeter:
    matcher = segmenter.matcher
    match_options = MatchOptions(debiased=options.debiased, svd_components=options.svd_components)
    matcher.components(match_options)  # a bad s fails before any image is read
    pairs = dataset.pairs[: options.pairs]
    meter = PckMeter()
    with tqdm(total=len(pairs), unit="pair", desc="spair", disable=not options.progress) as bar:
        for window in _windows(pairs, max(1, options.batch_size // 2)):
            paths = list(dict.fromkeys(p for pair in window for p in (pair.source_path, pair.target_path)))
            encoded = dict(zip(paths, matcher.encode([dataset.load(path) for path in paths])))
            for pair in window:
                target = encoded[pair.target_path]
                found = matcher.correspond(
                    encoded[pair.source_path], pair.source_points, target.features, target.original_size,
                    match_options,
                )
                meter.add(pair.category, pair_pck(found.points, pair.target_points, pair.threshold, pair.points))
                bar.update(1)
                if meter.pairs % 50 == 0:  # the authors' progress figure, every 50 pairs
                    means = meter.means()["all"]
                    bar.set_postfix_str("PCK " + ", ".join(f"{100 * means[a]:.2f}" for a in means))
    return meter
