"""`insid3-eval --ray`: the episodes drawn in order by the driver, scored by a Ray actor pool,
gathered back in episode order.

The driver draws every fold's episodes as the local run does (session.FoldRun: the legacy RNG
seeded here, logged episodes checked and replayed), so the protocol's random stream never
depends on the cluster. The folds' remaining episodes are interleaved round robin into one Ray
Data stream: with --all-folds the folds run side by side on the pool. Each actor keeps one
Segmenter, one FeatureCache and an EpisodeRunner per fold (the data root must be readable on
every node) and scores its batch's episodes in order; the two-bin counts come back in stream
order (Ray Data's preserve_order) and go to their fold's log and meter in episode order. So the
float32 sums, the reports and the logs equal the local run's (where the backend's features do
not depend on how images are batched: checked for ONNX Runtime and OpenVINO on CPUs), and a
log written by either resumes in the other.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np
from tqdm import tqdm

from insid3.engine.jobs.ray_data import cluster
from insid3.engine.jobs.ray_data.cluster import SegmenterSpec
from insid3.evaluation.datasets import DatasetEntry, build_benchmark
from insid3.evaluation.datasets.base import SegmentationBenchmark
from insid3.evaluation.episode import Episode
from insid3.evaluation.features_cache import FeatureCache, cache_folder
from insid3.evaluation.metrics import Counts
from insid3.evaluation.runner import EpisodeResult, EpisodeRunner, RunnerStats
from insid3.evaluation.session import EvalSettings, FoldRun, RunOptions, run_identity, run_settings, say_fold
from insid3.format.bundle import load_bundle
from insid3.format.refinement import RefineSettings

NO_FOLD = -1  # a dataset without folds, in the stream's integer column


@dataclass(frozen=True, kw_only=True)
class EvalSpec:
    """What every actor scores with: its Segmenter, the dataset, and how (as the local run)."""

    segmenter: SegmenterSpec
    dataset: str
    data_root: str
    shots: int
    protocol: str
    batch_size: int
    cache_bytes: int
    feature_cache: str | None


def stats_json(stats: RunnerStats, cache: FeatureCache) -> dict:
    return {"ms": dict(stats.ms), "images_needed": stats.images_needed, "images_encoded": stats.images_encoded,
            "episodes": stats.episodes, "cache": cache.stats()}


def difference(after: dict, before: dict) -> dict:
    """after - before, key by key, for the (nested) counters of `stats_json`."""
    return {key: difference(value, before.get(key, {})) if isinstance(value, dict) else value - before.get(key, 0)
            for key, value in after.items()}


def accumulate(total: dict, more: dict) -> None:
    for key, value in more.items():
        if isinstance(value, dict):
            accumulate(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value


class EpisodeWorker:
    """An actor of the pool: one Segmenter and feature cache, an EpisodeRunner per fold."""

    def __init__(self, spec: EvalSpec) -> None:
        self.spec = spec
        self.segmenter = spec.segmenter.build()
        self.cache = FeatureCache(self.segmenter.xp, max_bytes=spec.cache_bytes,
                                  folder=cache_folder(spec.feature_cache, self.segmenter.fingerprint))
        self.runners: dict[int, EpisodeRunner] = {}

    def runner(self, fold: int) -> EpisodeRunner:
        if fold not in self.runners:
            benchmark = build_benchmark(self.spec.dataset, self.spec.data_root, None if fold == NO_FOLD else fold,
                                        self.spec.shots)
            self.runners[fold] = EpisodeRunner(self.segmenter, benchmark, self.cache, protocol=self.spec.protocol,
                                               batch_size=self.spec.batch_size)
        return self.runners[fold]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        folds = [int(fold) for fold in batch["fold"]]
        episodes: list[Episode] = [pickle.loads(data) for data in batch["episode"]]
        counts = np.zeros((len(folds), 4), dtype=np.int64)  # (B, [I bg, I fg, U bg, U fg])
        notes = np.full(len(folds), "", dtype=object)
        stats = np.full(len(folds), "{}", dtype=object)  # each fold's share of the work, on its last row
        for fold in dict.fromkeys(folds):
            positions = [i for i, f in enumerate(folds) if f == fold]
            runner = self.runner(fold)
            before = stats_json(runner.stats, self.cache)
            for i, result in zip(positions, runner.run(episodes[i] for i in positions)):
                counts[i] = (*result.counts.intersection, *result.counts.union)
                notes[i] = result.note or ""
            stats[positions[-1]] = json.dumps(difference(stats_json(runner.stats, self.cache), before))
        return {"fold": batch["fold"], "index": batch["index"], "counts": counts, "note": notes, "stats": stats}


def interleaved(runs: dict[int, FoldRun]) -> list[tuple[int, Episode]]:
    """Every fold's remaining episodes, round robin across folds, each fold's in episode order."""
    drawn = [[(fold, episode) for episode in run.remaining] for fold, run in runs.items()]
    return [pair for turn in zip_longest(*drawn) for pair in turn if pair is not None]


def evaluate_on_ray(settings: EvalSettings, spec: DatasetEntry, folds: list[int | None], shots: int,
                    benchmarks: dict[int | None, SegmentationBenchmark], options: RunOptions,
                    say: Callable[[str], None]) -> list[dict]:
    """Each fold's report (in `folds`' order), as evaluate_here would write it, on the cluster of
    `settings.cluster` (its pool fitted to the cluster, or waited for: cluster.plan_actors)."""
    import ray

    if settings.cluster is None:
        raise ValueError("evaluate_on_ray needs settings.cluster")
    with cluster.connected(settings.cluster) as fixed:
        cluster.quiet_ray_data()
        plan = cluster.plan_actors(settings.cluster, fixed=fixed, reading_cpus=0.0, say=say)  # the driver reads
        segmenter = SegmenterSpec(
            bundle=cluster.absolute(settings.bundle), backend=settings.backend, precision=settings.precision,
            refine=RefineSettings.of(settings.refine), svd_components=settings.svd_components, tau=settings.tau,
            merge_threshold=settings.merge_threshold, num_threads=plan.threads(),
        )
        info = cluster.remote_get(cluster.on_worker_resources(cluster.probe_worker, plan).remote(segmenter))
        say(f"Ray, {plan.describe()}: {info.describe}")
        worker = EvalSpec(
            segmenter=segmenter, dataset=settings.dataset, data_root=cluster.absolute(settings.data_root), shots=shots,
            protocol=options.protocol, batch_size=options.batch_size, cache_bytes=settings.cache_mib << 20,
            feature_cache=None if settings.feature_cache is None else cluster.absolute(settings.feature_cache),
        )
        keys = {fold: NO_FOLD if fold is None else fold for fold in folds}
        runs = {keys[fold]: FoldRun(spec=spec, benchmark=benchmarks[fold], fold=fold, shots=shots, out=settings.out,
                                    options=options,
                                    identity=run_identity(spec, fold, shots, info.fingerprint, info.hyperparameters,
                                                          options, info.backend, info.precision))
                for fold in folds}
        totals: dict[int, dict] = {key: {} for key in runs}
        started = time.perf_counter()
        try:
            gather(runs, totals, plan, worker, f"{spec.name} {shots}-shot, {len(runs)} fold(s)", options.progress)
        except ray.exceptions.RayError as exc:
            raise cluster.job_error(exc) from None
        finally:
            for run in runs.values():
                run.close()
        seconds = time.perf_counter() - started  # the folds ran side by side: each took the whole time
    report_settings = {
        **run_settings(settings, info.hyperparameters, info.backend, info.device, info.precision,
                        load_bundle(settings.bundle).metadata.to_json()),  # read here: the driver loads no backend
        "ray": {"workers": plan.workers, "gpus_per_worker": plan.gpus, "cpus_per_worker": plan.cpus},
    }
    reports = []
    for fold in folds:
        total = totals[keys[fold]]
        stats = RunnerStats(ms=total.get("ms", {}), images_needed=total.get("images_needed", 0),
                            images_encoded=total.get("images_encoded", 0), episodes=total.get("episodes", 0))
        report = runs[keys[fold]].report(settings=report_settings, seconds=seconds, stats=stats,
                                         cache_stats=total.get("cache", {}))
        say_fold(spec, fold, shots, report)
        reports.append(report)
    return reports


def gather(runs: dict[int, FoldRun], totals: dict[int, dict], plan: cluster.ActorPlan, spec: EvalSpec, title: str,
           progress: bool) -> None:
    """Score the folds' remaining episodes on the pool, each result into its fold's log and meter
    in episode order, each fold's work counters into `totals`."""
    work = interleaved(runs)
    with tqdm(total=sum(run.total for run in runs.values()), initial=sum(run.resumed for run in runs.values()),
              unit="ep", desc=title, file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar, \
            closing(scored(work, plan, spec)) as rows:
        for (fold, episode), row in zip(work, rows):
            if (int(row["fold"]), int(row["index"])) != (fold, episode.index):
                raise cluster.RayJobError(f"episode {episode.index} of fold {fold} came back as episode "
                                          f"{row['index']} of fold {row['fold']}: the stream lost its order")
            i_bg, i_fg, u_bg, u_fg = (int(value) for value in row["counts"])
            runs[fold].record(EpisodeResult(episode, Counts((i_bg, i_fg), (u_bg, u_fg)), row["note"] or None))
            accumulate(totals[fold], json.loads(row["stats"]))
            bar.update(1)


def scored(work: list[tuple[int, Episode]], plan: cluster.ActorPlan, spec: EvalSpec) -> Iterator[dict]:
    """The pool's rows for `work`, in its order (nothing to run: none); closing this generator
    shuts the pipeline down."""
    import ray

    if not work:
        return
    rows = [{"fold": fold, "index": episode.index, "episode": pickle.dumps(episode)} for fold, episode in work]
    dataset = cluster.streaming_dataset_options(ray.data.from_items(rows))
    with warnings.catch_warnings():  # cluster.actor_pool_fault_tolerance: deprecated, still honoured
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = dataset.map_batches(
            EpisodeWorker, batch_size=spec.batch_size, compute=ray.data.ActorPoolStrategy(size=plan.workers),
            fn_constructor_kwargs={"spec": spec}, **plan.remote_args(), **cluster.actor_pool_fault_tolerance(),
        )
    yield from dataset.iter_rows()
