"""One calibration from the examples to the profile: episodes drawn (seeded), every setting of
the grid scored on each (evaluation/calibration/sweep.py), logged as it goes (resumable: the same
settings replay the log and continue), then the reports, the heatmap and the profile."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from insid3.engine.runtime.backends import load_backend
from insid3.engine.runtime.backends.base import BackendOptions
from insid3.evaluation.calibration.episodes import CalibrationBenchmark, is_negative
from insid3.evaluation.calibration.examples import ExampleSet, read_examples
from insid3.evaluation.calibration.log import LOG_FILE, SweepLog, SweptEpisode
from insid3.evaluation.calibration.report import write_heatmap, write_json, write_markdown
from insid3.evaluation.calibration.results import (
    Gain,
    ScoreSeparation,
    SettingResult,
    bootstrap_gain,
    propose_min_score,
    recommend,
    setting_result,
)
from insid3.evaluation.calibration.settings import CalibrationSettings
from insid3.evaluation.calibration.sweep import SCORE_NAME, Setting, SweepGrid, SweepScorer
from insid3.evaluation.episode_log import EpisodeLogError
from insid3.evaluation.features_cache import FeatureCache, cache_folder
from insid3.evaluation.sampling import episode_rng
from insid3.format.bundle import Bundle, load_bundle
from insid3.format.profile import BundleIdentity, Profile
from insid3.format.refinement import RefineSettings

PROFILE_FILE = "profile.json"
REPORT_STEM = "calibration"


@dataclass(frozen=True)
class Calibration:
    """What a calibration found (also written to `out`)."""

    grid: SweepGrid
    results: tuple[SettingResult, ...]  # in grid order
    recommended: SettingResult
    default: SettingResult
    gain: Gain
    separation: ScoreSeparation
    records: tuple[SweptEpisode, ...]
    profile: Profile
    report: dict
    paths: dict[str, Path]


def grid_for(bundle: Bundle, settings: CalibrationSettings) -> SweepGrid:
    meta = bundle.metadata
    return SweepGrid.around(meta.defaults, meta.embed_dim, bundle.positional_basis().shape[1],
                            svd_components=settings.svd_components, tau=settings.tau,
                            merge_threshold=settings.merge_threshold, refine=settings.refine)


def run_identity(settings: CalibrationSettings, examples: ExampleSet, grid: SweepGrid, identity: BundleIdentity,
                 backend: str, precision: str) -> dict:
    """What the log's counts depend on: another identity is another calibration."""
    return {
        "examples": examples.source, "concepts": [c.name for c in examples.concepts], "shots": settings.shots,
        "seed": settings.seed, "negatives_per_concept": settings.negatives_per_concept, "protocol": settings.protocol,
        "grid": grid.to_json(), "model_sha256": identity.model_sha256, "basis_sha256": identity.basis_sha256,
        "resolution": identity.resolution, "backend": backend, "precision": precision, "score": SCORE_NAME,
    }  # not --episodes: the first N episodes are those of any larger N, so a run can be extended


def calibrate(settings: CalibrationSettings) -> Calibration:
    """Run (or resume) the calibration `settings` describe; KeyboardInterrupt keeps the log."""
    bundle = load_bundle(settings.bundle)
    examples = read_examples(settings.source, settings.negatives)
    benchmark = CalibrationBenchmark(examples, settings.shots, settings.negatives_per_concept)
    grid = grid_for(bundle, settings)
    backend = load_backend(bundle, settings.backend, BackendOptions(precision=settings.precision))
    identity = BundleIdentity.of(bundle)
    cache_root = cache_folder(settings.feature_cache, identity)
    cache = FeatureCache(backend.xp, max_bytes=settings.cache_mib << 20, folder=cache_root)
    scorer = SweepScorer(bundle, backend, grid, cache, protocol=settings.protocol)
    total = len(benchmark) if settings.episodes is None else min(settings.episodes, len(benchmark))
    out = Path(settings.out)
    log = SweepLog(out / LOG_FILE, run_identity(settings, examples, grid, identity, backend.name, backend.precision),
                   overwrite=settings.overwrite)
    remaining = islice(benchmark.episodes(episode_rng(settings.seed)), total)
    done = log.done[:total]
    for logged in done:
        episode = next(remaining, None)
        if episode is None:
            raise EpisodeLogError(f"{log.path} holds more episodes than the examples now give")
        log.check_same_episode(logged, episode)
    started = time.perf_counter()
    computed = 0
    try:
        with tqdm(total=total, initial=len(done), unit="ep", desc=f"calibrating {len(grid)} settings",
                  file=sys.stderr, disable=not settings.progress, dynamic_ncols=True) as bar:
            for episode in remaining:
                target = benchmark.load(episode.target, episode.class_id)
                references = [benchmark.load(item, episode.class_id) for item in episode.references]
                outcomes, note = scorer.score(target.rgb, target.mask, [(r.rgb, r.mask) for r in references],
                                              target.ignore)
                log.append(SweptEpisode(episode, tuple(outcomes), note))
                computed += 1
                bar.update(1)
    finally:
        log.close()
    seconds = time.perf_counter() - started
    records = tuple(log.done[:total])
    timings = {"seconds": seconds, "episodes_computed": computed, "episodes_resumed": len(done),
               "images_encoded": scorer.images_encoded, "feature_cache": cache.stats(),
               "stage_ms_per_episode": {k: v / max(computed, 1) for k, v in sorted(scorer.clock.ms.items())}}
    return summarise(settings, bundle, examples, grid, records, backend, timings)


def summarise(settings: CalibrationSettings, bundle: Bundle, examples: ExampleSet, grid: SweepGrid,
              records: tuple[SweptEpisode, ...], backend, timings: dict) -> Calibration:
    names = [c.name for c in examples.concepts]
    all_settings = grid.settings()
    results = tuple(setting_result(records, i, s, names) for i, s in enumerate(all_settings))
    defaults = bundle.metadata.defaults
    default_setting = Setting(defaults.svd_components, defaults.tau, defaults.merge_threshold, grid.refine[0])
    default_index = all_settings.index(default_setting)
    best = recommend(results, default_setting)
    best_index = all_settings.index(best.setting)
    gain = bootstrap_gain(records, best, best_index, results[default_index], default_index, len(names),
                          resamples=settings.bootstrap, seed=settings.seed)
    separation = propose_min_score(records, best_index, SCORE_NAME)
    out = Path(settings.out)
    episodes = [{**r.episode.to_json(), "concept": names[r.episode.class_id], "negative": is_negative(r.episode),
                 **({"note": r.note} if r.note else {})} for r in records]
    calibration_data = {
        "source": examples.source, "concepts": names, "episodes": len(records), "shots": settings.shots,
        "seed": settings.seed, "miou": best.miou, "default_miou": results[default_index].miou,
        "gain": gain.to_json(), "report": str(out / f"{REPORT_STEM}.json"),
    }
    profile = Profile(hyperparameters=best.setting.hyperparameters, bundle=BundleIdentity.of(bundle),
                      refine=RefineSettings.of(best.setting.refine), min_score=separation.threshold,
                      calibration=calibration_data)
    report = {
        "kind": "insid3 calibrate report",
        "bundle": str(settings.bundle), "bundle_identity": profile.to_json()["bundle"],
        "weights": bundle.metadata.weights.kind, "backend": backend.name, "device": backend.device,
        "precision": backend.precision, "examples": examples.source,
        "concepts": [{"name": c.name, "positives": len(c.positives), "negatives": len(c.negatives)}
                     for c in examples.concepts],
        "shots": settings.shots, "seed": settings.seed, "protocol": settings.protocol,
        "episodes_run": len(records), "negatives_run": separation.negatives, "grid": grid.to_json(),
        "default": results[default_index].to_json(), "recommended": best.to_json(), "gain": gain.to_json(),
        "min_score": separation.to_json(), "settings": [r.to_json() for r in results],
        "episodes": episodes, "timings": timings,
    }
    paths = {"json": out / f"{REPORT_STEM}.json", "markdown": out / f"{REPORT_STEM}.md",
             "profile": out / PROFILE_FILE}
    write_json(paths["json"], report)
    if settings.heatmap:
        heatmap = write_heatmap(out / f"{REPORT_STEM}-heatmap.png", grid, results, best)
        if heatmap is not None:
            paths["heatmap"] = heatmap
            report["heatmap"] = str(heatmap)
            write_json(paths["json"], report)
    write_markdown(paths["markdown"], report)
    profile.write(paths["profile"])
    return Calibration(grid=grid, results=results, recommended=best, default=results[default_index], gain=gain,
                       separation=separation, records=records, profile=profile, report=report, paths=paths)
