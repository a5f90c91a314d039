"""Episodes through the engine: features cached by image content, the backbone batched across
consecutive episodes, and the next batch encoded while this one decodes.

A worker thread takes the next episodes in order, loads their images and masks, looks every
image up in the FeatureCache and encodes the ones it lacks in one backbone call (the backend
splits it by its max batch), stopping once `batch_size` new images are gathered. The main
thread meanwhile decodes the previous window episode by episode: the references' shots from
their cached features (Segmenter.shots_from_features), the target's mask on the comparison grid
(Segmenter.decode at R x R for the authors' protocol) and its two-bin counts. Results come out
in episode order, so the float32 accumulation is the authors' whatever the batching.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from insid3.engine.runtime.images import prepare_reference_mask
from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import StageClock
from insid3.errors import ReferenceMaskError
from insid3.evaluation.datasets.base import SegmentationBenchmark
from insid3.evaluation.episode import Episode, LoadedItem
from insid3.evaluation.features_cache import FeatureCache, content_key
from insid3.evaluation.grid import on_grid, prediction_size
from insid3.evaluation.metrics import Counts, intersection_union

# Why an episode is scored with an empty prediction: where the authors' code would crash.
EMPTY_REFERENCE_NOTE = (
    "a reference mask is empty at R x R (the authors' code crashes here); scored as an empty prediction"
)


@dataclass(frozen=True)
class EpisodeResult:
    episode: Episode
    counts: Counts
    note: str | None = None
    prediction: np.ndarray | None = None  # the bool mask on the grid, when the runner keeps them


@dataclass
class _Loaded:
    episode: Episode
    target: LoadedItem
    references: list[LoadedItem]
    target_key: str
    reference_keys: list[str]


@dataclass
class _Window:
    items: list[_Loaded]
    features: dict[str, Any]  # content key -> (N, C) features, for every image of the window
    encoded: int = 0


@dataclass
class RunnerStats:
    """Wall-clock milliseconds per stage (summed over episodes) and images encoded."""

    ms: dict[str, float] = field(default_factory=dict)
    images_needed: int = 0  # target and reference slots of the episodes (what the authors encode)
    images_encoded: int = 0  # what went through the backbone (the rest came from the cache)
    episodes: int = 0

    def add(self, stage: str, ms: float) -> None:
        self.ms[stage] = self.ms.get(stage, 0.0) + ms


class EpisodeRunner:
    """One Segmenter (its bundle, backend and hyperparameters) scoring episodes of one benchmark."""

    def __init__(
        self,
        segmenter: Segmenter,
        benchmark: SegmentationBenchmark,
        cache: FeatureCache,
        *,
        protocol: str = "square",
        batch_size: int = 8,
        max_window: int = 64,
        keep_predictions: bool = False,
    ) -> None:
        if batch_size < 1 or max_window < 1:
            raise ValueError(f"batch_size and max_window must be >= 1, got {batch_size}, {max_window}")
        self.segmenter = segmenter
        self.benchmark = benchmark
        self.cache = cache
        self.protocol = protocol
        self.batch_size = batch_size
        self.max_window = max_window
        self.keep_predictions = keep_predictions
        self.resolution = segmenter.bundle.metadata.resolution
        prediction_size(protocol, self.resolution, (1, 1))  # the protocol's name, checked now
        self.stats = RunnerStats()

    # ------------------------------------------------------------------ worker side
    def _load(self, episode: Episode) -> _Loaded:
        target = self.benchmark.load(episode.target, episode.class_id)
        references = [self.benchmark.load(item, episode.class_id) for item in episode.references]
        return _Loaded(
            episode, target, references, content_key(target.rgb), [content_key(r.rgb) for r in references]
        )

    def _next_window(self, episodes: Iterator[Episode]) -> _Window | None:
        started = time.perf_counter()
        items: list[_Loaded] = []
        features: dict[str, Any] = {}
        missing: dict[str, np.ndarray] = {}  # key -> rgb, in first-seen order
        for episode in episodes:
            loaded = self._load(episode)
            items.append(loaded)
            self.stats.images_needed += 1 + len(loaded.references)
            for key, item in zip([loaded.target_key, *loaded.reference_keys], [loaded.target, *loaded.references]):
                if key in features or key in missing:
                    continue
                cached = self.cache.get(key)
                if cached is None:
                    missing[key] = item.rgb
                else:
                    features[key] = cached
            if len(missing) >= self.batch_size or len(items) >= self.max_window:
                break
        if not items:
            return None
        loaded_at = time.perf_counter()
        if missing:
            prepared = [self.segmenter.prepare(rgb) for rgb in missing.values()]
            encoded = self.segmenter.encode(prepared, role="target")
            for i, key in enumerate(missing):
                features[key] = encoded[i].copy()  # a copy: a cached row must not pin its whole batch
                self.cache.put(key, features[key])
        self.stats.add("load", (loaded_at - started) * 1e3)
        self.stats.add("backbone", (time.perf_counter() - loaded_at) * 1e3)
        self.stats.images_encoded += len(missing)
        return _Window(items, features, len(missing))

    # ------------------------------------------------------------------ main side
    def _score(self, loaded: _Loaded, features: dict[str, Any], clock: StageClock) -> EpisodeResult:
        seg, target = self.segmenter, loaded.target
        size = target.rgb.shape[:2]
        try:
            masks = [prepare_reference_mask(r.mask, r.rgb.shape[:2], self.resolution) for r in loaded.references]
        except ReferenceMaskError:
            masks = None
        grid = prediction_size(self.protocol, self.resolution, size)
        if masks is None:
            prediction, note = np.zeros(grid, dtype=bool), EMPTY_REFERENCE_NOTE
        else:
            stacked = seg.xp.stack([features[key] for key in loaded.reference_keys])
            reference = Reference.from_shots(seg.shots_from_features(stacked, masks), seg.fingerprint)
            pixels = seg.prepare(target.rgb).pixels if seg.refine.crf else None  # the CRF reads the image
            prediction, note = seg.decode(features[loaded.target_key], grid, reference, clock, pixels=pixels), None
        gt = on_grid(target.mask, self.protocol, self.resolution)
        ignore = None if target.ignore is None else on_grid(target.ignore, self.protocol, self.resolution)
        kept = prediction if self.keep_predictions else None
        return EpisodeResult(loaded.episode, intersection_union(prediction, gt, ignore), note, kept)

    def run(self, episodes: Iterable[Episode]) -> Iterator[EpisodeResult]:
        """Score `episodes` in order, yielding each result as soon as it is known."""
        source = iter(episodes)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="insid3-eval-encode") as pool:
            pending = pool.submit(self._next_window, source)
            while True:
                window = pending.result()
                if window is None:
                    return
                pending = pool.submit(self._next_window, source)
                for loaded in window.items:
                    clock = StageClock(self.segmenter.backend.synchronize)
                    result = self._score(loaded, window.features, clock)
                    for stage, ms in clock.ms.items():
                        self.stats.add(stage, ms)
                    self.stats.episodes += 1
                    yield result
