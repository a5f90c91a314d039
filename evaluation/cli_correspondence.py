"""insid3-eval --dataset spair: SPair-71k keypoint matching scored by PCK, through the engine.

    insid3-eval --dataset spair --bundle bundles/dinov3-vitb16-768 --data-root data --svd-components 20
    insid3-eval --dataset spair --bundle bundles/dinov3-vitb16-768 --data-root data --original

Every pair of SPair-71k/Layout/large/test.txt, in order; PCK@0.05/0.10/0.15/0.20 per pair,
averaged over all pairs as the authors report it, plus per-category figures. Prints the authors'
summary line on stdout and writes OUT/<run>.json and OUT/<run>.per_class_score.txt (the
authors' table). docs/correspondence.md gives the layout and the protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from insid3.engine.runtime.correspondence import MatchOptions
from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import Insid3Error
from insid3.evaluation.datasets.spair import SpairDataset
from insid3.evaluation.pck import ALPHAS, per_class_table, summary_line
from insid3.evaluation.spair_run import SpairOptions, evaluate_spair

DATASETS = ("spair",)  # what this CLI answers for `insid3-eval --dataset`
README_FIGURES = {  # the authors' README, ViT-B at 768 px: PCK@(0.05, 0.1, 0.15, 0.2)
    "original": (30.1, 46.8, 55.6, 61.2),
    "debiased (s = 20)": (33.7, 52.6, 62.5, 68.7),
}


def wants(argv: list[str] | None) -> bool:
    """Whether an insid3-eval command line asks for a dataset this CLI scores."""
    args = sys.argv[1:] if argv is None else argv
    for index, arg in enumerate(args):
        if arg == "--dataset" and index + 1 < len(args) and args[index + 1] in DATASETS:
            return True
        if arg.startswith("--dataset=") and arg.split("=", 1)[1] in DATASETS:
            return True
    return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="insid3-eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="keypoint benchmark")
    parser.add_argument("--bundle", required=True, help="engine bundle folder (insid3-export)")
    parser.add_argument("--data-root", required=True, help="folder holding SPair-71k/")
    features = parser.add_mutually_exclusive_group()
    features.add_argument("--debiased", dest="debiased", action="store_true", default=argparse.SUPPRESS,
                          help="match debiased features (the default)")
    features.add_argument("--original", dest="debiased", action="store_false", default=argparse.SUPPRESS,
                          help="match the original features (the README's other row)")
    parser.add_argument("--svd-components", type=int, default=None,
                        help="positional directions removed; None: the bundle's (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=None, help="only the first N pairs of the list")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime, openvino, torch")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="CPU precision (openvino)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per backbone call")
    parser.add_argument("--out", type=Path, default=Path("insid3-eval-out"), help="output folder (reports)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    args.debiased = getattr(args, "debiased", True)
    for flag, value in (("--pairs", args.pairs), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    return args


def run(args: argparse.Namespace) -> int:
    dataset = SpairDataset(args.data_root)  # every annotation read and checked before the model loads
    segmenter = Segmenter.from_bundle(args.bundle, backend=args.backend, precision=args.precision)
    options = SpairOptions(debiased=args.debiased, svd_components=args.svd_components, batch_size=args.batch_size,
                           pairs=args.pairs, progress=not args.no_progress)
    s = segmenter.matcher.components(MatchOptions(debiased=args.debiased, svd_components=args.svd_components))
    print(f"insid3-eval: {segmenter.describe()}; SPair-71k, {'debiased, s=' + str(s) if s is not None else 'original'}",
          file=sys.stderr)
    meter = evaluate_spair(segmenter, dataset, options)
    means = meter.means()
    name = f"spair-{'debiased-s' + str(s) if s is not None else 'original'}"
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "dataset": "spair", "pairs": meter.pairs, "debiased": args.debiased, "svd_components": s,
        "pck": {f"{a}": 100 * means["all"][a] for a in ALPHAS},
        "per_category": {c: {f"{a}": 100 * v[a] for a in ALPHAS} for c, v in sorted(means.items()) if c != "all"},
        "readme_figures_vit_b_768": {row: dict(zip(map(str, ALPHAS), f)) for row, f in README_FIGURES.items()},
        "bundle": segmenter.bundle.metadata.to_json(), "backend": segmenter.backend.name,
    }
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{name}.per_class_score.txt").write_text(per_class_table(means))
    print(summary_line(means))
    print(f"insid3-eval: {meter.pairs} pairs; reports {args.out / name}.json and .per_class_score.txt", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        return run(args)
    except Insid3Error as exc:
        print(f"insid3-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insid3-eval: interrupted: no SPair report written (the run is not resumable)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
