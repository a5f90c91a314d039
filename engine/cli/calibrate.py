"""Tune INSID3 to your own labelled examples: which svd_components, tau and merge_threshold work
on your data, by how much, and a profile that `insid3 segment --profile` and `insid3 serve --profile` use.

    insid3 calibrate --bundle bundles/dinov3-vits16-768 --folder labelled/ --negatives empty/ --out calib/
    insid3 calibrate --bundle B --concepts concepts.yaml --shots 2 --out calib/
    insid3 calibrate --bundle B --coco instances.json --images photos/ --episodes 200 --out calib/

Each labelled image is the target once, its references drawn (seeded) from the concept's other
examples; images of other concepts and --negatives folders are targets whose right answer is the
empty mask. Every setting of the grid is scored on every episode, each image through the backbone
once. Writes OUT/calibration.{json,md}, OUT/calibration-heatmap.png and OUT/profile.json; the
episode log OUT/calibration.episodes.jsonl makes an interrupted run resume (docs/calibration.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from insid3.engine.cli.arguments import UsageError, add_backend, add_bundle, add_output, add_precision, add_progress


def _values(kind: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    return parse


def configure(parser: argparse.ArgumentParser) -> None:
    add_bundle(parser)
    source = parser.add_argument_group("labelled examples (one of)")
    source.add_argument("--folder", type=Path, help="NAME.<image> + NAME.mask.png pairs of one concept")
    source.add_argument("--name", default=None, help="--folder: the concept's name (default: the folder's)")
    source.add_argument("--concepts", type=Path, help="JSON or YAML {name: [{image, mask}, ...]} (as insid3 segment)")
    source.add_argument("--coco", type=Path, help="COCO instances file (a category is a concept); with --images")
    source.add_argument("--images", type=Path, help="--coco: the folder its file_names are relative to")
    parser.add_argument("--negatives", type=Path, action="append", default=[],
                        help="a folder of images showing none of the concepts (repeatable)")
    parser.add_argument("--negatives-per-concept", type=int, default=None,
                        help="at most this many negative episodes per concept, a seeded pick (default: as many "
                             "as the concept has labelled images)")
    episodes = parser.add_argument_group("episodes")
    episodes.add_argument("--shots", type=int, default=1, help="references per episode")
    episodes.add_argument("--episodes", type=int, default=None, help="only the first N episodes (of a seeded order)")
    episodes.add_argument("--seed", type=int, default=0, help="seed of the episode order and the references")
    grid = parser.add_argument_group("the grid (comma-separated values; default: five values around the bundle's "
                                     "default, which is always included)")
    grid.add_argument("--svd-components", type=_values(int), default=None, help="e.g. 94,141,188,235,282")
    grid.add_argument("--tau", type=_values(float), default=None, help="e.g. 0.5,0.55,0.6,0.65,0.7")
    grid.add_argument("--merge-threshold", type=_values(float), default=None, help="e.g. 0.1,0.15,0.2,0.25,0.3")
    grid.add_argument("--refine", type=_values(str), default=("bilinear",),
                      help="refinements to sweep: bilinear, crf or bilinear,crf")
    add_backend(parser)
    add_precision(parser)
    parser.add_argument("--cache-mib", type=int, default=2048, help="memory for cached backbone features (MiB)")
    parser.add_argument("--feature-cache", type=Path, default=None, help="also keep features in this folder")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of the gain's interval")
    parser.add_argument("--no-heatmap", action="store_true", help="no heatmap PNG")
    add_output(parser, default="insid3-calibrate-out", required=False,
               overwrite_help="discard an episode log made by another calibration")
    add_progress(parser)


def settings_from(args: argparse.Namespace):
    from insid3.evaluation.calibration.examples import ExampleSource
    from insid3.evaluation.calibration.settings import CalibrationSettings

    given = [flag for flag, value in (("--folder", args.folder), ("--concepts", args.concepts), ("--coco", args.coco))
             if value is not None]
    if len(given) != 1:
        raise UsageError("give the labelled examples as one of --folder, --concepts or --coco"
                         + (f" (got {' and '.join(given)})" if given else ""))
    if (args.images is not None) != (args.coco is not None):
        raise UsageError("--images goes with --coco (the folder of its images)")
    if args.name is not None and args.folder is None:
        raise UsageError("--name applies to --folder")
    for flag, value, least in (("--shots", args.shots, 1), ("--episodes", args.episodes, 1),
                               ("--negatives-per-concept", args.negatives_per_concept, 0),
                               ("--cache-mib", args.cache_mib, 0), ("--bootstrap", args.bootstrap, 1)):
        if value is not None and value < least:
            raise UsageError(f"{flag} must be >= {least}, got {value}")
    if args.folder is not None:
        source = ExampleSource("folder", args.folder, name=args.name)
    elif args.concepts is not None:
        source = ExampleSource("concepts", args.concepts)
    else:
        source = ExampleSource("coco", args.coco, images=args.images)
    return CalibrationSettings(
        bundle=Path(args.bundle), source=source, out=Path(args.out), negatives=tuple(args.negatives),
        negatives_per_concept=args.negatives_per_concept, shots=args.shots, episodes=args.episodes, seed=args.seed,
        svd_components=args.svd_components, tau=args.tau, merge_threshold=args.merge_threshold,
        refine=tuple(args.refine), backend=args.backend, precision=args.precision, cache_mib=args.cache_mib,
        feature_cache=args.feature_cache, bootstrap=args.bootstrap, overwrite=args.overwrite,
        progress=not args.no_progress, heatmap=not args.no_heatmap,
    )


def run(args: argparse.Namespace, prog: str = "insid3 calibrate") -> int:
    settings = settings_from(args)
    from insid3.evaluation.calibration.run import calibrate

    try:
        result = calibrate(settings)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted: finished episodes are logged in {settings.out}; run the same command to resume",
              file=sys.stderr)
        return 130
    best, gain, separation = result.recommended, result.gain, result.separation
    print(f"{prog}: recommended {best.setting.describe()}: mIoU {best.miou:.2f} "
          f"(defaults {result.default.miou:.2f}, gain {gain.miou:+.2f}, "
          f"{100 * gain.level:.0f}% interval {gain.low:+.2f} to {gain.high:+.2f})", file=sys.stderr)
    if separation.threshold is not None:
        t = separation.threshold
        print(f"{prog}: score threshold S = {t.threshold:.4f} (false positives {100 * t.false_positive_rate:.1f}%, "
              f"misses {100 * t.miss_rate:.1f}%)", file=sys.stderr)
    else:
        print(f"{prog}: no score threshold: {separation.why}", file=sys.stderr)
    print(f"{prog}: reports {result.paths['markdown']} and {result.paths['json']}; profile {result.paths['profile']}",
          file=sys.stderr)
    print(f"mIoU = {best.miou:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from insid3.engine.cli.runner import run_verb

    return run_verb("insid3 calibrate", __name__, list(sys.argv[1:] if argv is None else argv))[0]


if __name__ == "__main__":
    sys.exit(main())
