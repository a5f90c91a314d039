"""`insid3-match`: find a reference image's keypoints in many target images.

    insid3-match --bundle bundles/dinov3-vitb16-768 --ref cat.jpg --points "120,80;64,200" \
        --svd-components 20 --out matches/ --csv --visualize photos/ 'more/*.jpg'

One <stem>.json per target (engine/jobs/match_outputs.py): each keypoint's match in target pixels
and its peak similarity; --csv adds <stem>.csv, --visualize <stem>.match.jpg (the two images
side by side, a line per keypoint). The reference is encoded once and the targets go through
the backbone in batches. Jobs resume as insid3-segment's do: the folder's insid3-job.json
records the bundle, the reference image, the points and the options; a re-run with the same
ones skips finished targets, with others it stops and says what changed (unless --overwrite).
Ctrl-C keeps what is done and exits 130.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from insid3.engine.cli.segment import check_paths, expand_targets
from insid3.engine.jobs.manifest import MANIFEST_FILE, JobManifest, claim_folder
from insid3.engine.jobs.match_outputs import MatchOutputs, record_of
from insid3.engine.jobs.outputs.files import remove_temporaries
from insid3.engine.runtime.correspondence import MatchOptions, check_points, parse_points
from insid3.engine.runtime.images import PreparedImage, load_rgb
from insid3.engine.runtime.reference import EncodingFingerprint
from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import InputImageError, Insid3Error, KeypointError
from insid3.format.bundle import Bundle, load_bundle
from insid3.format.settings import Hyperparameters
from insid3.format.verify import sha256_of
from insid3.kernels.correspondence import SIGMA_PATCHES, TEMPERATURE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="insid3-match", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bundle", required=True, help="engine bundle folder (insid3-export)")
    parser.add_argument("--ref", required=True, help="the reference image the points are on")
    points = parser.add_mutually_exclusive_group(required=True)
    points.add_argument("--points", help='keypoints in reference pixels: "x,y;x,y;..." (or JSON [[x, y], ...])')
    points.add_argument("--points-file", help="a file of keypoints: one 'x,y' per line, or JSON [[x, y], ...]")
    features = parser.add_mutually_exclusive_group()
    features.add_argument("--debiased", dest="debiased", action="store_true", default=argparse.SUPPRESS,
                          help="match debiased features, the positional subspace removed (the default)")
    features.add_argument("--original", dest="debiased", action="store_false", default=argparse.SUPPRESS,
                          help="match the original features instead")
    parser.add_argument("--svd-components", type=int, default=None,
                        help="positional directions removed when debiased; None: the bundle's (default: %(default)s)")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime, openvino, torch")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="CPU precision (openvino)")
    parser.add_argument("--batch-size", type=int, default=8, help="targets per backbone call")
    parser.add_argument("--csv", action="store_true", help="also write <stem>.csv")
    parser.add_argument("--visualize", action="store_true", help="also write <stem>.match.jpg, side by side")
    parser.add_argument("--overwrite", action="store_true", help="redo targets whose output exists")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("targets", nargs="+", help="image files, folders or glob patterns")
    args = parser.parse_args(argv)
    args.debiased = getattr(args, "debiased", True)  # neither flag: debiased, as the authors' match()
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    return args


@dataclass(frozen=True)
class MatchJobManifest(JobManifest):
    """insid3-segment's manifest, its reference entry the image and the points' digests."""

    def differences(self, other: JobManifest) -> list[str]:
        names = {"bundle": "the bundle", "references": "the reference image or its points",
                 "hyperparameters": "the matching options", "format": "the output files (--csv)",
                 "precision": "the precision"}
        return [words for field, words in names.items() if getattr(self, field) != getattr(other, field)]


def read_points(args: argparse.Namespace) -> list[tuple[float, float]]:
    if args.points is not None:
        return parse_points(args.points, "--points")
    path = Path(args.points_file)
    if path.is_dir():
        raise KeypointError(f"--points-file {path} is a folder: give a file of points")
    if not path.is_file():
        raise KeypointError(f"--points-file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeypointError(f"--points-file {path} cannot be read: {exc}") from None
    return parse_points(text, f"--points-file {path}")


def effective_components(args: argparse.Namespace, bundle: Bundle) -> int | None:
    """The s matching will use (checked now, before a model loads); None when not debiased."""
    if not args.debiased:
        return None
    meta = bundle.metadata
    s = meta.defaults.svd_components if args.svd_components is None else args.svd_components
    Hyperparameters(svd_components=s).validated(meta.embed_dim)
    return s


def job_manifest(args: argparse.Namespace, bundle: Bundle, points, s: int | None) -> MatchJobManifest:
    points_digest = hashlib.sha256(json.dumps([list(map(float, p)) for p in points]).encode()).hexdigest()
    options = {"debiased": args.debiased, "svd_components": s, "sigma_patches": SIGMA_PATCHES,
               "temperature": TEMPERATURE}
    return MatchJobManifest(
        bundle=asdict(EncodingFingerprint.of(bundle, s or 0)),
        references=((sha256_of(Path(args.ref)), points_digest),),
        hyperparameters=options, format="json+csv" if args.csv else "json", precision=args.precision,
    )


def run(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    targets = expand_targets(args.targets)
    clash = next((target for target in targets if f"{target.stem}.json" == MANIFEST_FILE), None)
    if clash is not None:  # its <stem>.json would replace the job's manifest
        raise InputImageError(f"target {clash}: its matches would be written over {MANIFEST_FILE}: rename it")
    out = check_paths(argparse.Namespace(ref=[args.ref], ref_mask=[], out=args.out))
    reference_rgb = load_rgb(args.ref)
    points = check_points(read_points(args), (reference_rgb.height, reference_rgb.width), f"--ref {args.ref}")
    s = effective_components(args, bundle)
    remove_temporaries(out)
    outputs = MatchOutputs(out, with_csv=args.csv, with_picture=args.visualize)
    claim_folder(out, job_manifest(args, bundle, points, s), overwrite=args.overwrite,
                 has_outputs=outputs.has_outputs())
    todo = targets if args.overwrite else [t for t in targets if not outputs.done(t)]
    skipped, failures, done = len(targets) - len(todo), [], 0
    try:
        segmenter = Segmenter.from_bundle(args.bundle, backend=args.backend, precision=args.precision)
        print(f"insid3-match: {segmenter.describe()}; {len(points)} point(s), "
              f"{'debiased, s=' + str(s) if s is not None else 'original features'}", file=sys.stderr)
        reference = segmenter.encode_image(reference_rgb)

        def readable() -> Iterator[PreparedImage]:
            for target in todo:
                try:
                    yield segmenter.prepare(target)
                except InputImageError as exc:
                    failures.append((target, str(exc)))

        options = MatchOptions(debiased=args.debiased, svd_components=s)
        with tqdm(total=len(todo), unit="img", desc="matching", file=sys.stderr) as bar:
            for item, found in segmenter.matcher.match_stream(reference, points, readable(), options, args.batch_size):
                record = record_of(found, reference=args.ref, reference_size=reference.original_size,
                                   target=item.name, source_points=points, debiased=args.debiased, svd_components=s)
                outputs.write(record, reference_rgb, load_rgb(item.name) if args.visualize else None)
                done += 1
                bar.update(done + len(failures) - bar.n)
            bar.update(done + len(failures) - bar.n)
    except KeyboardInterrupt:
        print(f"insid3-match: interrupted: {done} matched, {skipped} already done, kept in {out}; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    for target, why in failures:
        print(f"insid3-match: skipped {target}: {why}", file=sys.stderr)
    print(f"insid3-match: {done} matched, {skipped} already done, {len(failures)} failed -> {out}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        return run(args)
    except Insid3Error as exc:
        print(f"insid3-match: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the first match: nothing to keep
        print("insid3-match: interrupted before any target was matched", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
