"""insid3-eval beside the authors' way, on the same episodes and weights, in one process.

    insid3 eval speed --bundle B --dataset coco --data-root R --episodes 24 --passes 3
    insid3 eval speed --bundle B --synthetic DIR --episodes 24   # writes a COCO-20i layout

The two sides (OursEpisodes, AuthorsEpisodes) go through the side-by-side harness
(benchmarks/harness.py), in this process. After an untimed warm-up of each on two episodes, each
pass runs the first N episodes through insid3-eval's runner (a fresh feature cache, the backbone
batched across episodes, decoding overlapping encoding) or through insid3.authors_way as the
authors' evaluation script does (every reference re-encoded with its target, torch eager, sklearn
clustering, per-cluster loops), the sides' passes interleaved (ABBA); it reports the median
episodes/s of each side, their ratio, and whether every episode's counts agree. The authors'
script itself needs their repository and a CUDA device, so its transcription stands in for it.
"""

from __future__ import annotations

import pickle
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.benchmarks.harness import Pass, differing, in_process, pass_ratio_median, run_side_by_side
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.segmenter import Segmenter
from insid3.evaluation.datasets import build_benchmark
from insid3.evaluation.features_cache import FeatureCache
from insid3.evaluation.metrics import IoUMeter
from insid3.evaluation.runner import EpisodeResult, EpisodeRunner
from insid3.evaluation.sampling import episode_rng


def write_synthetic_coco(root: Path, images_per_class: int = 6, size: tuple[int, int] = (480, 640)) -> Path:
    """A COCO-20i layout of drawn scenes (engine/jobs/scenes.py): fold 0's 20 classes, each with its own
    images of one concept, label value c + 1 on the concept's pixels. Returns the data root."""
    base = root / "COCO2014"
    lists: dict[int, list[str]] = {c: [] for c in range(80)}
    for j, c in enumerate(range(0, 80, 4)):
        for i in range(images_per_class):
            name = f"val2014/COCO_val2014_{1000 * c + i:012d}.jpg"
            scene = draw_scene(seed=1000 * c + i, size=size, concept=j % 3)
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene.image).save(base / name, quality=95)
            label = base / "annotations" / name.replace(".jpg", ".png")
            label.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((scene.mask * (c + 1)).astype(np.uint8), mode="L").save(label)
            lists[c].append(name)
    (base / "splits" / "val").mkdir(parents=True, exist_ok=True)
    for fold in range(4):
        split = {c: lists[c] if c % 4 == fold else [] for c in range(80)}
        (base / "splits" / "val" / f"fold{fold}.pkl").write_bytes(pickle.dumps(split))
    return root


def _score(results, benchmark, episodes: int) -> tuple[Pass, IoUMeter]:
    """One timed pass over the episodes' results (an iterator that does the work as it is read)."""
    meter = IoUMeter(benchmark.class_ids, benchmark.num_classes)
    started, counts = time.perf_counter(), []
    for result in results:
        meter.update(result.counts, result.episode.class_id)
        counts.append(result.counts)
    return Pass(seconds=time.perf_counter() - started, units=episodes, outputs=tuple(counts)), meter


@dataclass(frozen=True, kw_only=True)
class SpeedSettings:
    bundle: str
    data_root: Path
    dataset: str = "coco"
    fold: int = 0
    shots: int = 1
    episodes: int = 24
    passes: int = 3
    backend: str = "auto"
    precision: str = "fp32"
    batch_size: int = 8


class EpisodeSide:
    """What both sides share (a harness.Side): the episodes, an untimed warm-up on two of them
    (compiled kernels loaded, backend sessions and torch ready), passes scored as they run."""

    def __init__(self, settings: SpeedSettings, benchmark, episodes: list) -> None:
        self.settings, self.benchmark, self.episodes = settings, benchmark, episodes

    def results(self, episodes: list) -> Iterator[EpisodeResult]:
        raise NotImplementedError

    def warm_up(self) -> None:
        list(self.results(self.episodes[:2]))

    def measure_pass(self) -> Pass:
        one, self.meter = _score(self.results(self.episodes), self.benchmark, len(self.episodes))
        return one

    def finish(self) -> dict:
        return {"miou": self.meter.miou()}


class OursEpisodes(EpisodeSide):
    """insid3-eval's runner, a fresh feature cache every pass."""

    def start(self) -> None:
        self.segmenter = Segmenter.from_bundle(self.settings.bundle, backend=self.settings.backend,
                                               precision=self.settings.precision)

    def results(self, episodes: list) -> Iterator[EpisodeResult]:
        runner = EpisodeRunner(self.segmenter, self.benchmark, FeatureCache(self.segmenter.xp),
                               batch_size=self.settings.batch_size)
        yield from runner.run(episodes)
        self.encoded = runner.stats.images_encoded

    def finish(self) -> dict:
        return {**super().finish(), "bundle": self.segmenter.describe(), "images_encoded": self.encoded}


class AuthorsEpisodes(EpisodeSide):
    """The authors' evaluation loop, transcribed (authors_side.py)."""

    def start(self) -> None:
        from insid3.authors_way import load_model

        self.model = load_model(self.settings.bundle)

    def results(self, episodes: list) -> Iterator[EpisodeResult]:
        from insid3.evaluation.authors_side import run_authors_way

        return run_authors_way(self.model, self.benchmark, episodes)


def measure(settings: SpeedSettings) -> dict:
    """Both sides in this process, through the side-by-side harness: passes interleaved (ABBA)."""
    benchmark = build_benchmark(settings.dataset, str(settings.data_root), settings.fold, settings.shots)
    episodes = list(islice(benchmark.episodes(episode_rng()), settings.episodes))
    runs = run_side_by_side(
        [in_process("ours", lambda: OursEpisodes(settings, benchmark, episodes)),
         in_process("authors' way", lambda: AuthorsEpisodes(settings, benchmark, episodes))],
        settings.passes,
    )
    ours, theirs = runs["ours"], runs["authors' way"]
    agree = True
    for p, (mine, other) in enumerate(zip(ours.passes, theirs.passes)):
        count = differing(mine.outputs, other.outputs)
        agree = agree and count == 0
        print(f"pass {p + 1}: ours {mine.units / mine.seconds:.3f} ep/s, authors' way "
              f"{other.units / other.seconds:.3f} ep/s, {count} of {len(episodes)} episodes with other counts",
              file=sys.stderr, flush=True)
    return {
        "dataset": settings.dataset, "fold": settings.fold, "shots": settings.shots, "episodes": len(episodes),
        "bundle": ours.result["bundle"], "passes": settings.passes, "batch_size": settings.batch_size,
        "ours_episodes_per_second": ours.fps(), "authors_episodes_per_second": theirs.fps(),
        "ours_median": ours.median_fps(), "authors_median": theirs.median_fps(),
        "ratio": ours.median_fps() / theirs.median_fps(),
        "pass_ratio_median": pass_ratio_median(ours, theirs),
        "images_needed": sum(1 + len(e.references) for e in episodes),
        "images_encoded_by_ours": ours.result["images_encoded"],
        "counts_identical": agree, "miou_ours": ours.result["miou"], "miou_authors": theirs.result["miou"],
    }
