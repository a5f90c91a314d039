"""Find a reference image's keypoints in many target images.

    insid3 match --bundle bundles/dinov3-vitb16-768 --ref cat.jpg --points "120,80;64,200" \\
        --svd-components 20 --out matches/ --csv --visualize photos/ 'more/*.jpg'

One <stem>.json per target: each keypoint's match in target pixels and its peak similarity;
--csv adds <stem>.csv, --visualize <stem>.match.jpg. Jobs resume as `insid3 segment`'s do;
Ctrl-C keeps what is done and exits 130. The job itself: engine/jobs/match.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from insid3.engine.cli import arguments as shared
from insid3.engine.cli.runner import job_summary

__all__ = ["configure", "main", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    shared.add_bundle(parser)
    parser.add_argument("--ref", required=True, help="the reference image the points are on")
    points = parser.add_mutually_exclusive_group(required=True)
    points.add_argument("--points", help='keypoints in reference pixels: "x,y;x,y;..." (or JSON [[x, y], ...])')
    points.add_argument("--points-file", help="a file of keypoints: one 'x,y' per line, or JSON [[x, y], ...]")
    add_feature_choice(parser)
    shared.add_hyperparameters(parser, clustering=False)
    shared.add_backend(parser)
    shared.add_precision(parser)
    shared.add_batch_size(parser)
    parser.add_argument("--csv", action="store_true", help="also write <stem>.csv")
    parser.add_argument("--visualize", action="store_true", help="also write <stem>.match.jpg, side by side")
    shared.add_output(parser)
    shared.add_progress(parser)
    parser.add_argument("targets", nargs="+", help="image files, folders or glob patterns")


def add_feature_choice(parser: argparse.ArgumentParser) -> None:
    """--debiased (the default, as the authors' match()) or --original."""
    features = parser.add_mutually_exclusive_group()
    features.add_argument("--debiased", dest="debiased", action="store_true", default=True,
                          help="match debiased features, the positional subspace removed (the default)")
    features.add_argument("--original", dest="debiased", action="store_false",
                          help="match the original features instead")


def run(args: argparse.Namespace, prog: str) -> int:
    from insid3.engine.jobs.match import MatchJobSettings, run_match_job

    logging.basicConfig(level=logging.WARNING)
    settings = MatchJobSettings(
        bundle=Path(args.bundle), reference=args.ref, targets=tuple(args.targets), out=Path(args.out),
        points=args.points, points_file=None if args.points_file is None else Path(args.points_file),
        debiased=args.debiased, svd_components=args.svd_components, backend=args.backend, precision=args.precision,
        batch_size=args.batch_size, csv=args.csv, visualize=args.visualize, overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    counts = run_match_job(settings, say=lambda line: print(f"{prog}: {line}", file=sys.stderr))
    return job_summary(prog, counts, "matched", counts.out)


def main(argv: list[str] | None = None) -> int:
    """`insid3-match ARGS` in-process (tests)."""
    from insid3.engine.cli.main import run_command

    return run_command("insid3-match", "match", argv)


if __name__ == "__main__":
    from insid3.engine.cli.main import alias

    alias("match")()
