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
from typing import TYPE_CHECKING

from tqdm import tqdm

from insid3.engine.runtime.reference import EncodingFingerprint
from insid3.engine.runtime.segmenter import Segmenter
from insid3.evaluation.datasets import DatasetEntry
from insid3.evaluation.datasets.base import SegmentationBenchmark
from insid3.evaluation.episode_log import EpisodeLog, EpisodeLogError
from insid3.evaluation.features_cache import FeatureCache
from insid3.evaluation.metrics import IoUMeter
from insid3.evaluation.report import run_report
from insid3.evaluation.runner import EpisodeResult, EpisodeRunner, RunnerStats
from insid3.evaluation.sampling import episode_rng

if TYPE_CHECKING:
    from insid3.engine.jobs.ray_data.cluster import ClusterSettings


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """One `insid3 eval` run: what to evaluate (bundle, dataset, folds, shots, episodes), with which
    settings (None hyperparameters: the bundle's), where (here, or on Ray with `cluster`), and where
    to write (the episode logs and reports in `out`; json/markdown: other report paths)."""

    bundle: str
    dataset: str
    data_root: str
    fold: int | None = None
    all_folds: bool = False
    shots: int = 1
    episodes: int | None = None
    svd_components: int | None = None
    tau: float | None = None
    merge_threshold: float | None = None
    refine: str = "bilinear"
    grid: str = "square"
    backend: str = "auto"
    precision: str = "fp32"
    batch_size: int = 8
    cache_mib: int = 2048
    feature_cache: Path | None = None
    seed: int = 0
    out: Path = Path("insid3-eval-out")
    json: Path | None = None
    markdown: Path | None = None
    overwrite: bool = False
    progress: bool = True
    cluster: ClusterSettings | None = None


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


def run_settings(settings: EvalSettings, hyperparameters: dict, backend: str, device: str, precision: str,
                 bundle: dict) -> dict:
    """The report's settings: what ran, with which weights and where."""
    return {
        "hyperparameters": hyperparameters, "backend": backend, "device": device, "precision": precision,
        "refine": settings.refine, "protocol": settings.grid, "seed": settings.seed, "batch_size": settings.batch_size,
        "bundle": bundle, "bundle_path": str(settings.bundle), "data_root": str(settings.data_root),
    }


def say_fold(spec: DatasetEntry, fold: int | None, shots: int, report: dict) -> None:
    print(f"insid3-eval: {spec.title} fold {fold if fold is not None else '-'} {shots}-shot: "
          f"mIoU = {report['miou']:.1f}, FB-IoU = {report['fb_iou']:.1f} ({report['episodes_run']} episodes)",
          file=sys.stderr)


def run_identity(spec: DatasetEntry, fold: int | None, shots: int, fingerprint: EncodingFingerprint,
                 hyperparameters: dict, options: RunOptions, backend: str, precision: str) -> dict:
    """What the counts of a run depend on: a log written under another identity is not resumed
    (where the episodes ran, here or on a Ray cluster, is not part of it)."""
    return {
        "dataset": spec.name, "fold": fold, "shots": shots, "protocol": options.protocol, "seed": options.seed,
        "model_sha256": fingerprint.model_sha256, "basis_sha256": fingerprint.basis_sha256,
        "resolution": fingerprint.resolution, "hyperparameters": hyperparameters,
        "backend": backend, "precision": precision, "refine": options.refine,
    }


class FoldRun:
    """One fold's log, meter and episodes: those logged are checked and replayed in order (the
    float32 sums of an uninterrupted run), `remaining` draws the rest, `record` takes each result
    in episode order, `report` ends it."""

    def __init__(self, *, spec: DatasetEntry, benchmark: SegmentationBenchmark, fold: int | None, shots: int,
                 out: Path, options: RunOptions, identity: dict) -> None:
        self.spec, self.benchmark, self.fold, self.shots, self.options = spec, benchmark, fold, shots, options
        self.total = len(benchmark) if options.episodes is None else min(options.episodes, len(benchmark))
        self.log = EpisodeLog(out / log_name(spec, fold, shots), identity, overwrite=options.overwrite)
        self.meter = IoUMeter(benchmark.class_ids, benchmark.num_classes)
        done = self.log.done[: self.total]
        self.resumed, self.computed = len(done), 0
        self.remaining = islice(benchmark.episodes(episode_rng(options.seed)), self.total)
        for logged in done:
            episode = next(self.remaining, None)
            if episode is None:
                raise EpisodeLogError(f"{self.log.path} holds more episodes than the dataset now gives")
            self.log.check_same_episode(logged, episode)
            self.meter.update(logged.counts, logged.episode.class_id)

    @property
    def title(self) -> str:
        return f"{self.spec.name}" + (f" fold {self.fold}" if self.fold is not None else "") + f" {self.shots}-shot"

    def record(self, result: EpisodeResult) -> None:
        self.log.append(result)
        self.meter.update(result.counts, result.episode.class_id)
        self.computed += 1

    def close(self) -> None:
        self.log.close()

    def report(self, *, settings: dict, seconds: float, stats: RunnerStats, cache_stats: dict) -> dict:
        records = self.log.done[: self.total]
        notes = sorted({f"{r.note} (episodes: {sum(1 for x in records if x.note == r.note)})"
                        for r in records if r.note})
        timings = {
            "seconds": seconds,
            "episodes_computed": self.computed,
            "episodes_resumed": self.resumed,
            "episodes_per_second": self.computed / seconds if seconds > 0 and self.computed else 0.0,
            "stage_ms_per_episode": {k: v / max(stats.episodes, 1) for k, v in sorted(stats.ms.items())},
            "images_needed": stats.images_needed,
            "images_encoded": stats.images_encoded,
            "feature_cache": cache_stats,
        }
        benchmark = self.benchmark
        return run_report(
            spec=self.spec, fold=self.fold, shots=self.shots, protocol=self.options.protocol, meter=self.meter,
            episodes=[r.to_json() for r in records],
            class_names={c: benchmark.class_name(c) for c in benchmark.class_ids},
            settings=settings, timings=timings, notes=notes, episodes_full=len(benchmark),
        )


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
    run = FoldRun(spec=spec, benchmark=benchmark, fold=fold, shots=shots, out=out, options=options, identity=identity)
    runner = EpisodeRunner(segmenter, benchmark, cache, protocol=options.protocol, batch_size=options.batch_size)
    started = time.perf_counter()
    try:
        with tqdm(total=run.total, initial=run.resumed, unit="ep", desc=run.title, file=sys.stderr,
                  disable=not options.progress, dynamic_ncols=True) as bar, \
                closing(runner.run(run.remaining)) as results:
            bar.set_postfix_str(f"mIoU {run.meter.miou():.1f}")
            for result in results:
                run.record(result)
                bar.update(1)
                bar.set_postfix_str(f"mIoU {run.meter.miou():.1f}")
    finally:
        run.close()
    return run.report(settings=settings, seconds=time.perf_counter() - started, stats=runner.stats,
                      cache_stats=cache.stats())
