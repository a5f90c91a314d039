"""One run (a dataset, a fold, a shot count) from the first episode to its report, resumable.

The episodes are drawn again from the start every time (drawing is cheap and is the only way to
reach episode k of the authors' stream); those the log already holds are checked against it and
their counts replayed into the meter, the rest go through the EpisodeRunner and into the log.
"""

from __future__ import annotations

import sys
import time
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from insid3.engine.segmenter import Segmenter
from insid3.evaluation.datasets import DatasetEntry
from insid3.evaluation.datasets.base import SegmentationBenchmark
from insid3.evaluation.episode_log import EpisodeLog, EpisodeLogError
from insid3.evaluation.features_cache import FeatureCache
from insid3.evaluation.metrics import IoUMeter
from insid3.evaluation.report import run_report
from insid3.evaluation.runner import EpisodeRunner
from insid3.evaluation.sampling import episode_rng


@dataclass(frozen=True)
class RunOptions:
    """How to run, beside what to run: these never change the episodes, some change the numbers."""

    protocol: str = "square"
    seed: int = 0
    batch_size: int = 8
    episodes: int | None = None  # the first N of the full protocol; None: all
    overwrite: bool = False
    refine: str = "bilinear"
    progress: bool = True


def log_name(spec: DatasetEntry, fold: int | None, shots: int) -> str:
    folds = f"-fold{fold}" if fold is not None else ""
    return f"{spec.name}{folds}-{shots}shot.episodes.jsonl"


def run_identity(spec: DatasetEntry, fold: int | None, shots: int, segmenter: Segmenter, options: RunOptions,
                 backend: str, precision: str) -> dict:
    """What the counts of a run depend on: a log written under another identity is not resumed."""
    fingerprint = segmenter.fingerprint
    return {
        "dataset": spec.name, "fold": fold, "shots": shots, "protocol": options.protocol, "seed": options.seed,
        "model_sha256": fingerprint.model_sha256, "basis_sha256": fingerprint.basis_sha256,
        "resolution": fingerprint.resolution, "hyperparameters": segmenter.hyperparameters.to_json(),
        "backend": backend, "precision": precision, "refine": options.refine,
    }


def run_fold(
    *,
    spec: DatasetEntry,
    benchmark: SegmentationBenchmark,
    fold: int | None,
    shots: int,
    segmenter: Segmenter,
    cache: FeatureCache,
    out: Path,
    options: RunOptions,
    settings: dict,
    identity: dict,
) -> dict:
    total = len(benchmark) if options.episodes is None else min(options.episodes, len(benchmark))
    log = EpisodeLog(out / log_name(spec, fold, shots), identity, overwrite=options.overwrite)
    meter = IoUMeter(benchmark.class_ids, benchmark.num_classes)
    done = log.done[:total]
    stream = islice(benchmark.episodes(episode_rng(options.seed)), total)
    for logged in done:  # replayed in order: the float32 sums of an uninterrupted run
        episode = next(stream, None)
        if episode is None:
            raise EpisodeLogError(f"{log.path} holds more episodes than the dataset now gives")
        log.check_same_episode(logged, episode)
        meter.update(logged.counts, logged.episode.class_id)
    runner = EpisodeRunner(segmenter, benchmark, cache, protocol=options.protocol, batch_size=options.batch_size)
    title = f"{spec.name}" + (f" fold {fold}" if fold is not None else "") + f" {shots}-shot"
    started, computed = time.perf_counter(), 0
    try:
        with tqdm(total=total, initial=len(done), unit="ep", desc=title, file=sys.stderr,
                  disable=not options.progress, dynamic_ncols=True) as bar, closing(runner.run(stream)) as results:
            bar.set_postfix_str(f"mIoU {meter.miou():.1f}")
            for result in results:
                log.append(result)
                meter.update(result.counts, result.episode.class_id)
                computed += 1
                bar.update(1)
                bar.set_postfix_str(f"mIoU {meter.miou():.1f}")
    finally:
        log.close()
    seconds = time.perf_counter() - started
    records = log.done[:total]
    notes = sorted({f"{r.note} (episodes: {sum(1 for x in records if x.note == r.note)})" for r in records if r.note})
    timings = {
        "seconds": seconds,
        "episodes_computed": computed,
        "episodes_resumed": len(done),
        "episodes_per_second": computed / seconds if seconds > 0 and computed else 0.0,
        "stage_ms_per_episode": {k: v / max(runner.stats.episodes, 1) for k, v in sorted(runner.stats.ms.items())},
        "images_needed": runner.stats.images_needed,
        "images_encoded": runner.stats.images_encoded,
        "feature_cache": cache.stats(),
    }
    return run_report(
        spec=spec, fold=fold, shots=shots, protocol=options.protocol, meter=meter,
        episodes=[r.to_json() for r in records],
        class_names={c: benchmark.class_name(c) for c in benchmark.class_ids},
        settings=settings, timings=timings, notes=notes, episodes_full=len(benchmark),
    )
