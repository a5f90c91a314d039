"""One `insid3 eval` run: its folds drawn and scored (here, or on a Ray actor pool), its reports written.

Draws the authors' episodes (numpy's legacy RNG seeded with 0), segments each target from its
references with the engine, compares on the R x R grid as the authors' script does, and reports
mIoU and FB-IoU (JSON, and markdown laid out like the paper's Table 1). Every finished episode is
logged in the output folder: the same run resumes after an interruption.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from insid3.engine.runtime.segmenter import Segmenter
from insid3.evaluation.datasets import DatasetEntry, build_benchmark, entry
from insid3.evaluation.features_cache import FeatureCache, cache_folder
from insid3.evaluation.report import folds_report, write_json, write_markdown
from insid3.evaluation.session import EvalSettings, RunOptions, run_fold, run_identity, run_settings, say_fold

Say = Callable[[str], None]


def folds_to_run(settings: EvalSettings, say: Say) -> list[int | None]:
    spec = entry(settings.dataset)
    if not spec.folds:
        if settings.fold is not None or settings.all_folds:
            say(f"{settings.dataset} has no folds: --fold / --all-folds ignored")
        return [None]
    if settings.all_folds:
        return list(spec.folds)
    return [spec.folds[0] if settings.fold is None else settings.fold]


def run_name(dataset: str, folds: list[int | None], shots: int, all_folds: bool) -> str:
    if all_folds:
        return f"{dataset}-all-folds-{shots}shot"
    return f"{dataset}-fold{folds[0]}-{shots}shot" if folds[0] is not None else f"{dataset}-{shots}shot"


def evaluate_here(settings: EvalSettings, spec: DatasetEntry, folds: list[int | None], shots: int,
                  benchmarks: dict, options: RunOptions, say: Say) -> list[dict]:
    """Each fold's report, the folds one after the other on this machine."""
    segmenter = Segmenter.from_bundle(
        settings.bundle, backend=settings.backend, svd_components=settings.svd_components, tau=settings.tau,
        merge_threshold=settings.merge_threshold, precision=settings.precision, refine=settings.refine,
    )
    say(segmenter.describe())
    backend = segmenter.backend
    cache = FeatureCache(segmenter.xp, max_bytes=settings.cache_mib << 20,
                         folder=cache_folder(settings.feature_cache, segmenter.fingerprint))
    hyperparameters = segmenter.hyperparameters.to_json()
    report_settings = run_settings(settings, hyperparameters, backend.name, backend.device, backend.precision,
                                   segmenter.bundle.metadata.to_json())
    runs = []
    for fold in folds:
        identity = run_identity(spec, fold, shots, segmenter.fingerprint, hyperparameters, options, backend.name,
                                backend.precision)
        report = run_fold(spec=spec, benchmark=benchmarks[fold], fold=fold, shots=shots, segmenter=segmenter,
                          cache=cache, out=settings.out, options=options, settings=report_settings, identity=identity)
        say_fold(spec, fold, shots, report)
        runs.append(report)
    return runs


def run_evaluation(settings: EvalSettings,
                   say: Say = lambda line: print(line, file=sys.stderr)) -> tuple[dict, Path, Path]:
    """Run (or resume) every fold asked for; the report, and the JSON and markdown files written."""
    spec = entry(settings.dataset)
    folds = folds_to_run(settings, say)
    shots = 1 if settings.dataset == "permis" else settings.shots  # PerMIS always has one reference, as theirs
    if shots != settings.shots:
        say("permis always has one reference: --shots ignored")
    benchmarks = {fold: build_benchmark(settings.dataset, settings.data_root, fold, shots) for fold in folds}
    options = RunOptions(protocol=settings.grid, seed=settings.seed, batch_size=settings.batch_size,
                         episodes=settings.episodes, overwrite=settings.overwrite, refine=settings.refine,
                         progress=settings.progress)
    if settings.cluster is not None:  # the same episodes and logs, scored by a Ray actor pool
        from insid3.evaluation.ray_runner import evaluate_on_ray

        runs = evaluate_on_ray(settings, spec, folds, shots, benchmarks, options, say)
    else:
        runs = evaluate_here(settings, spec, folds, shots, benchmarks, options, say)
    report = folds_report(spec, shots, runs) if settings.all_folds and len(runs) > 1 else runs[0]
    name = run_name(settings.dataset, folds, shots, settings.all_folds and len(runs) > 1)
    json_path = settings.json or settings.out / f"{name}.json"
    markdown_path = settings.markdown or settings.out / f"{name}.md"
    write_json(json_path, report)
    write_markdown(markdown_path, [report])
    return report, json_path, markdown_path
