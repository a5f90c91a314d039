"""insid3-eval: the paper's in-context segmentation benchmarks, episode for episode, through the engine.

    insid3-eval --bundle bundles/dinov3-vitl16-1024 --dataset coco --data-root data --all-folds

Draws the authors' episodes (numpy's legacy RNG seeded with 0), segments each target from its
references with the engine, compares on the R x R grid as the authors' script does, and reports
mIoU and FB-IoU (JSON, and markdown laid out like the paper's Table 1). Every finished episode is
logged in the output folder: the same command resumes after an interruption (Ctrl-C exits 130).
docs/evaluation.md gives the datasets' layouts and the protocol.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from insid3.engine.jobs.ray_data.cluster import add_ray_arguments, check_ray_arguments
from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import Insid3Error
from insid3.evaluation import cli_correspondence
from insid3.evaluation.datasets import REGISTRY, DatasetEntry, build_benchmark, entry
from insid3.evaluation.features_cache import FeatureCache, cache_folder
from insid3.evaluation.grid import PROTOCOLS
from insid3.evaluation.report import folds_report, write_json, write_markdown
from insid3.evaluation.session import RunOptions, run_fold, run_identity, run_settings, say_fold
from insid3.format.refinement import REFINE_METHODS

EXIT_USAGE = 2
# Mask refinements: the authors' bilinear upsampling (doc §9), or their dense CRF (docs/crf.md), the
# setting behind their published numbers (its lattice in the float32 of their CUDA run).
REFINEMENTS = REFINE_METHODS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insid3-eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bundle", required=True, help="engine bundle folder (insid3-export)")
    parser.add_argument("--dataset", required=True, choices=list(REGISTRY),
                        help="benchmark (keypoint matching: --dataset spair, see insid3-eval --dataset spair --help)")
    parser.add_argument("--data-root", required=True, help="folder holding the datasets (COCO2014/, LVIS/, ...)")
    folds = parser.add_mutually_exclusive_group()
    folds.add_argument("--fold", type=int, default=None, help="fold to run (default: 0; ignored by datasets without folds)")
    folds.add_argument("--all-folds", action="store_true", help="every fold; reports the mean of the fold mIoUs")
    parser.add_argument("--shots", type=int, default=1, help="references per episode")
    parser.add_argument("--episodes", type=int, default=None, help="run only the first N episodes of the protocol")
    parser.add_argument("--svd-components", type=int, default=None, help="positional directions removed (default: the bundle's)")
    parser.add_argument("--tau", type=float, default=None, help="clustering threshold (default: the bundle's)")
    parser.add_argument("--merge-threshold", type=float, default=None, help="aggregation threshold (default: the bundle's)")
    parser.add_argument("--refine", choices=REFINEMENTS, default="bilinear", help="mask refinement")
    parser.add_argument("--grid", choices=PROTOCOLS, default="square",
                        help="comparison grid: square = the authors' R x R; original = the image's own size (not the paper's)")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime, openvino, torch")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="CPU precision (openvino)")
    parser.add_argument("--batch-size", type=int, default=8, help="new images per backbone call (across episodes)")
    parser.add_argument("--cache-mib", type=int, default=2048, help="memory for cached features (MiB)")
    parser.add_argument("--feature-cache", type=Path, default=None, help="also keep features in this folder, across runs")
    parser.add_argument("--seed", type=int, default=0, help="numpy legacy seed of the episodes (the authors': 0)")
    parser.add_argument("--out", type=Path, default=Path("insid3-eval-out"), help="output folder (episode logs, reports)")
    parser.add_argument("--json", type=Path, default=None, help="JSON report (default: OUT/<run>.json)")
    parser.add_argument("--markdown", type=Path, default=None, help="markdown report (default: OUT/<run>.md)")
    parser.add_argument("--overwrite", action="store_true", help="discard an episode log made by another run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_arguments(parser)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value, low in (("--shots", args.shots, 1), ("--episodes", args.episodes, 1),
                             ("--batch-size", args.batch_size, 1), ("--cache-mib", args.cache_mib, 0)):
        if value is not None and value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    spec = REGISTRY[args.dataset]
    if args.fold is not None and spec.folds and args.fold not in spec.folds and args.fold != -1:
        parser.error(f"--fold {args.fold}: {args.dataset} has folds {spec.folds[0]}..{spec.folds[-1]}")
    check_ray_arguments(parser, args)
    return args


def folds_to_run(args: argparse.Namespace) -> list[int | None]:
    spec = entry(args.dataset)
    if not spec.folds:
        if args.fold is not None or args.all_folds:
            print(f"insid3-eval: {args.dataset} has no folds: --fold / --all-folds ignored", file=sys.stderr)
        return [None]
    if args.all_folds:
        return list(spec.folds)
    return [spec.folds[0] if args.fold is None else args.fold]


def run_name(dataset: str, folds: list[int | None], shots: int, all_folds: bool) -> str:
    if all_folds:
        return f"{dataset}-all-folds-{shots}shot"
    return f"{dataset}-fold{folds[0]}-{shots}shot" if folds[0] is not None else f"{dataset}-{shots}shot"


def evaluate_here(args: argparse.Namespace, spec: DatasetEntry, folds: list[int | None], shots: int,
                  benchmarks: dict, options: RunOptions) -> list[dict]:
    """Each fold's report, the folds one after the other on this machine."""
    segmenter = Segmenter.from_bundle(
        args.bundle, backend=args.backend, svd_components=args.svd_components, tau=args.tau,
        merge_threshold=args.merge_threshold, precision=args.precision, refine=args.refine,
    )
    print(f"insid3-eval: {segmenter.describe()}", file=sys.stderr)
    backend = segmenter.backend
    cache = FeatureCache(segmenter.xp, max_bytes=args.cache_mib << 20,
                         folder=cache_folder(args.feature_cache, segmenter.fingerprint))
    hyperparameters = segmenter.hyperparameters.to_json()
    settings = run_settings(args, hyperparameters, backend.name, backend.device, backend.precision,
                            segmenter.bundle.metadata.to_json())
    runs = []
    for fold in folds:
        identity = run_identity(spec, fold, shots, segmenter.fingerprint, hyperparameters, options, backend.name,
                                backend.precision)
        report = run_fold(spec=spec, benchmark=benchmarks[fold], fold=fold, shots=shots, segmenter=segmenter,
                          cache=cache, out=args.out, options=options, settings=settings, identity=identity)
        say_fold(spec, fold, shots, report)
        runs.append(report)
    return runs


def run(args: argparse.Namespace) -> int:
    spec = entry(args.dataset)
    folds = folds_to_run(args)
    shots = 1 if args.dataset == "permis" else args.shots  # PerMIS always has one reference, as theirs
    if shots != args.shots:
        print("insid3-eval: permis always has one reference: --shots ignored", file=sys.stderr)
    benchmarks = {fold: build_benchmark(args.dataset, args.data_root, fold, shots) for fold in folds}  # fail fast
    options = RunOptions(protocol=args.grid, seed=args.seed, batch_size=args.batch_size, episodes=args.episodes,
                         overwrite=args.overwrite, refine=args.refine, progress=not args.no_progress)
    if args.ray:  # the same episodes and logs, scored by a Ray actor pool (evaluation/ray_runner.py)
        from insid3.evaluation.ray_runner import evaluate_on_ray

        runs = evaluate_on_ray(args, spec, folds, shots, benchmarks, options)
    else:
        runs = evaluate_here(args, spec, folds, shots, benchmarks, options)
    report = folds_report(spec, shots, runs) if args.all_folds and len(runs) > 1 else runs[0]
    name = run_name(args.dataset, folds, shots, args.all_folds and len(runs) > 1)
    json_path = args.json or args.out / f"{name}.json"
    markdown_path = args.markdown or args.out / f"{name}.md"
    write_json(json_path, report)
    write_markdown(markdown_path, [report])
    print(f"mIoU = {report['miou']:.1f}")
    print(f"insid3-eval: reports {json_path} and {markdown_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    if cli_correspondence.wants(argv):  # --dataset spair: keypoints and PCK (evaluation/cli_correspondence.py)
        return cli_correspondence.main(argv)
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        return run(args)
    except Insid3Error as exc:
        print(f"insid3-eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"insid3-eval: interrupted: finished episodes are logged in {args.out}; run the same command to resume",
              file=sys.stderr)
        return 130


def console_main() -> None:
    """The console command: main(), then, after a --ray run, an immediate exit (exit_after)."""
    code = main()
    if "--ray" in sys.argv[1:]:
        from insid3.engine.jobs.ray_data.cluster import exit_after

        exit_after(code)
    sys.exit(code)


if __name__ == "__main__":
    console_main()
