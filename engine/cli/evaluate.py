"""`insid3 eval` and its sub-verbs: the paper's benchmarks through the engine, and the tools beside them.

    insid3 eval --bundle bundles/dinov3-vitl16-1024 --dataset coco --data-root data --all-folds
    insid3 eval --bundle bundles/dinov3-vitb16-768 --dataset spair --data-root data --svd-components 20
    insid3 eval speed | sensitivity | report ...

The runs themselves: evaluation/evaluate.py (mIoU, FB-IoU; resumable episode logs), evaluation/
spair_job.py (SPair-71k PCK), evaluation/speed.py, evaluation/sensitivity.py, evaluation/report.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from insid3.engine.cli import arguments as shared
from insid3.engine.cli.match import add_feature_choice
from insid3.engine.cli.runner import Command
from insid3.errors import Insid3Error

KEYPOINT_DATASETS = ("spair",)  # scored by PCK (evaluation/spair_job.py), not by masks


def datasets() -> list[str]:
    from insid3.evaluation.datasets import REGISTRY

    return list(REGISTRY)


# --- insid3 eval ------------------------------------------------------------------------------------


def configure_eval(parser: argparse.ArgumentParser) -> None:
    from insid3.evaluation.grid import PROTOCOLS

    shared.add_bundle(parser)
    parser.add_argument("--dataset", required=True, choices=datasets() + list(KEYPOINT_DATASETS),
                        help="benchmark: a segmentation one, or spair (keypoint matching, PCK)")
    parser.add_argument("--data-root", required=True, help="folder holding the datasets (COCO2014/, LVIS/, SPair-71k/...)")
    folds = parser.add_mutually_exclusive_group()
    folds.add_argument("--fold", type=int, default=None,
                       help="fold to run (default: the first; ignored by datasets without folds)")
    folds.add_argument("--all-folds", action="store_true", help="every fold; reports the mean of the fold mIoUs")
    parser.add_argument("--shots", type=int, default=1, help="references per episode")
    parser.add_argument("--episodes", type=int, default=None, help="run only the first N episodes of the protocol")
    shared.add_hyperparameters(parser)
    shared.add_refine(parser, lattice=False)
    parser.add_argument("--grid", choices=PROTOCOLS, default="square",
                        help="comparison grid: square = the authors' R x R; original = the image's own size (not the paper's)")
    shared.add_backend(parser)
    shared.add_precision(parser)
    shared.add_batch_size(parser, help="new images per backbone call (across episodes)")
    parser.add_argument("--cache-mib", type=int, default=2048, help="memory for cached features (MiB)")
    parser.add_argument("--feature-cache", type=Path, default=None,
                        help="also keep features in this folder, across runs")
    parser.add_argument("--seed", type=int, default=0, help="numpy legacy seed of the episodes (the authors': 0)")
    parser.add_argument("--out", type=Path, default=Path("insid3-eval-out"), help="output folder (episode logs, reports)")
    parser.add_argument("--json", type=Path, default=None, help="JSON report (default: OUT/<run>.json)")
    parser.add_argument("--markdown", type=Path, default=None, help="markdown report (default: OUT/<run>.md)")
    parser.add_argument("--overwrite", action="store_true", help="discard an episode log made by another run")
    shared.add_progress(parser)
    spair = parser.add_argument_group("keypoint matching (--dataset spair)")
    add_feature_choice(spair)
    spair.add_argument("--pairs", type=int, default=None, help="only the first N pairs of the list")
    shared.add_ray(parser)


def run_eval(args: argparse.Namespace, prog: str) -> int:
    logging.basicConfig(level=logging.WARNING)
    say = lambda line: print(f"{prog}: {line}", file=sys.stderr)  # noqa: E731
    if args.dataset in KEYPOINT_DATASETS:
        return run_spair(args, say)
    if args.pairs is not None or not args.debiased:
        raise shared.UsageError("--pairs, --original and --debiased apply to --dataset spair")
    for flag, value, least in (("--shots", args.shots, 1), ("--episodes", args.episodes, 1),
                               ("--batch-size", args.batch_size, 1), ("--cache-mib", args.cache_mib, 0)):
        shared.at_least(flag, value, least)
    from insid3.engine.jobs.job_folder import release_folder
    from insid3.evaluation.datasets import REGISTRY
    from insid3.evaluation.evaluate import run_evaluation
    from insid3.evaluation.session import EvalSettings

    spec = REGISTRY[args.dataset]
    if args.fold is not None and spec.folds and args.fold not in spec.folds and args.fold != -1:
        raise shared.UsageError(f"--fold {args.fold}: {args.dataset} has folds {spec.folds[0]}..{spec.folds[-1]}")
    settings = EvalSettings(
        bundle=args.bundle, dataset=args.dataset, data_root=args.data_root, fold=args.fold, all_folds=args.all_folds,
        shots=args.shots, episodes=args.episodes, svd_components=args.svd_components, tau=args.tau,
        merge_threshold=args.merge_threshold, refine=args.refine, grid=args.grid,
        backend=args.backend, precision=args.precision, batch_size=args.batch_size, cache_mib=args.cache_mib,
        feature_cache=args.feature_cache, seed=args.seed, out=args.out, json=args.json, markdown=args.markdown,
        overwrite=args.overwrite, progress=not args.no_progress, cluster=shared.cluster_from(args),
    )
    try:
        report, json_path, markdown_path = run_evaluation(settings, say)
    except KeyboardInterrupt:
        say(f"interrupted: finished episodes are logged in {args.out}; run the same command to resume")
        return 130
    finally:  # the episode logs held --out for this job (engine/jobs/job_folder.py)
        release_folder(settings.out)
    print(f"mIoU = {report['miou']:.1f}")
    say(f"reports {json_path} and {markdown_path}")
    return 0


def run_spair(args: argparse.Namespace, say) -> int:
    from insid3.evaluation.spair_job import SpairJobSettings, run_spair_job

    shared.at_least("--pairs", args.pairs, 1)
    if args.ray:
        raise shared.UsageError("--ray runs the segmentation datasets, not spair")
    settings = SpairJobSettings(
        bundle=args.bundle, data_root=args.data_root, debiased=args.debiased, svd_components=args.svd_components,
        pairs=args.pairs, backend=args.backend, precision=args.precision, batch_size=args.batch_size, out=args.out,
        progress=not args.no_progress,
    )
    try:
        print(run_spair_job(settings, say))
    except KeyboardInterrupt:
        say("interrupted: no SPair report written (the run is not resumable)")
        return 130
    return 0


EVALUATE = Command(__doc__.split("\n\n")[0], configure_eval, run_eval)


# --- insid3 eval speed ------------------------------------------------------------------------------


def configure_speed(parser: argparse.ArgumentParser) -> None:
    shared.add_bundle(parser)
    parser.add_argument("--dataset", default="coco", choices=datasets(), help="benchmark")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-root", type=Path, help="datasets folder")
    source.add_argument("--synthetic", type=Path, help="write a synthetic COCO-20i layout here and use it")
    parser.add_argument("--fold", type=int, default=0, help="fold")
    parser.add_argument("--shots", type=shared.positive_int, default=1, help="references per episode")
    parser.add_argument("--episodes", type=shared.positive_int, default=24, help="first N episodes")
    parser.add_argument("--passes", type=shared.positive_int, default=3,
                        help="alternating passes per side (medians reported)")
    shared.add_backend(parser, help="our backend")
    shared.add_precision(parser)
    shared.add_batch_size(parser, help="our new images per backbone call")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")


def run_speed(args: argparse.Namespace, prog: str) -> int:
    from insid3.evaluation.report import print_figures
    from insid3.evaluation.speed import SpeedSettings, measure, write_synthetic_coco

    data_root = args.data_root
    if args.synthetic is not None:
        if args.dataset != "coco":
            raise shared.UsageError("--synthetic writes a COCO-20i layout: use --dataset coco")
        if not (args.synthetic / "COCO2014").is_dir():
            write_synthetic_coco(args.synthetic)
        data_root = args.synthetic
    figures = measure(SpeedSettings(
        bundle=args.bundle, data_root=data_root, dataset=args.dataset, fold=args.fold, shots=args.shots,
        episodes=args.episodes, passes=args.passes, backend=args.backend, precision=args.precision,
        batch_size=args.batch_size,
    ))
    print_figures(figures, args.json)
    return 0


SPEED = Command("insid3 eval beside the authors' way, on the same episodes and weights, in one process "
                "(evaluation/speed.py).", configure_speed, run_speed)


# --- insid3 eval sensitivity ------------------------------------------------------------------------


def configure_sensitivity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="the reference bundle (e.g. eval-mode basis)")
    parser.add_argument("--other", type=Path, required=True, help="the same weights with another basis")
    parser.add_argument("--dataset", default="coco", choices=datasets(), help="benchmark")
    parser.add_argument("--data-root", type=Path, required=True, help="datasets folder")
    parser.add_argument("--fold", type=int, default=None, help="fold (default: the dataset's first)")
    parser.add_argument("--shots", type=shared.positive_int, default=1, help="references per episode")
    parser.add_argument("--episodes", type=shared.positive_int, default=48, help="first N episodes")
    shared.add_backend(parser, help="backend for both")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")


def run_sensitivity(args: argparse.Namespace, prog: str) -> int:
    from insid3.evaluation.report import print_figures
    from insid3.evaluation.sensitivity import SensitivitySettings, compare

    figures = compare(SensitivitySettings(
        bundle=args.bundle, other=args.other, data_root=args.data_root, dataset=args.dataset, fold=args.fold,
        shots=args.shots, episodes=args.episodes, backend=args.backend,
    ))
    print_figures(figures, args.json)
    return 0


SENSITIVITY = Command("How much the positional basis moves masks and mIoU: two bundles of the same weights and "
                      "resolution on the same episodes (evaluation/sensitivity.py).",
                      configure_sensitivity, run_sensitivity)


# --- insid3 eval report -----------------------------------------------------------------------------


def configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", type=Path, help="insid3 eval --json files")
    parser.add_argument("--markdown", type=Path, required=True, help="the table to write")


def run_report(args: argparse.Namespace, prog: str) -> int:
    from insid3.evaluation.report import write_markdown

    reports = []
    for path in args.reports:
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise Insid3Error(f"cannot read {path}: {exc}") from None
        if not isinstance(reports[-1], dict) or "miou" not in reports[-1] or "dataset" not in reports[-1]:
            raise Insid3Error(f"{path} is not an insid3 eval report")
    write_markdown(args.markdown, reports)
    return 0


REPORT = Command("Several insid3 eval JSON reports in one Table 1 (evaluation/report.py).", configure_report,
                 run_report)


def main(argv: list[str] | None = None) -> int:
    """`insid3-eval ARGS` in-process (tests)."""
    from insid3.engine.cli.main import run_command

    return run_command("insid3-eval", "eval", argv)


if __name__ == "__main__":
    from insid3.engine.cli.main import alias

    alias("eval")()
