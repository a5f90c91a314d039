"""`insid3-segment`: batch annotation of files, folders and globs with one cached reference.

    insid3-segment --bundle bundles/dinov3-vits16-768 --ref cat.jpg --ref-mask cat.png \
        --out masks/ photos/ 'more/*.jpg'

One mask PNG per target (same stem), optional overlay JPEGs, or one COCO instances file with
--format coco-rle. Unreadable targets are reported and skipped. The output folder's
insid3-job.json records what made its masks: a re-run with the same bundle, references and
settings resumes where the last one stopped (Ctrl-C included: exit 130, nothing lost); with
other inputs it stops and says what changed, unless --overwrite.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from insid3.engine.images import PreparedImage
from insid3.engine.job_manifest import JobManifest, JobMismatchError, claim_folder
from insid3.engine.job_outputs import COCO_FILE, CocoOutputs, PngOutputs, remove_temporaries
from insid3.engine.reference import EncodingFingerprint
from insid3.engine.segmenter import Segmenter
from insid3.errors import InputImageError, Insid3Error
from insid3.format.bundle import Bundle, load_bundle

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
__all__ = ["COCO_FILE", "main"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="insid3-segment", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bundle", required=True, help="engine bundle folder (insid3-export)")
    parser.add_argument("--ref", action="append", required=True, help="reference image (repeat for more shots)")
    parser.add_argument("--ref-mask", action="append", required=True, help="mask of the preceding --ref")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime, openvino, torch")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="CPU precision (openvino)")
    parser.add_argument("--batch-size", type=int, default=8, help="targets per backbone call")
    parser.add_argument("--format", choices=("png", "coco-rle"), default="png",
                        help="PNG masks, or one COCO instances file (masks.coco.json)")
    parser.add_argument("--category", default="object", help="the COCO category name of the masks")
    parser.add_argument("--overlay", action="store_true", help="also write <stem>.overlay.jpg")
    parser.add_argument("--overwrite", action="store_true", help="redo targets whose output exists")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("targets", nargs="+", help="image files, folders or glob patterns")
    args = parser.parse_args(argv)
    if len(args.ref) != len(args.ref_mask):
        parser.error(f"{len(args.ref)} --ref but {len(args.ref_mask)} --ref-mask: give one mask per reference")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    return args


def expand_targets(patterns: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns, in order, without duplicates."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            found.append(path)
        elif glob.has_magic(pattern):
            found += sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        else:
            raise InputImageError(f"target {pattern} does not exist")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputImageError(f"no target images found in {' '.join(patterns)}")
    stems: dict[str, Path] = {}
    for path in unique:
        if path.stem in stems:
            raise InputImageError(
                f"targets {stems[path.stem]} and {path} share the stem {path.stem!r}: their masks would collide"
            )
        stems[path.stem] = path
    return unique


def check_paths(args: argparse.Namespace) -> Path:
    """Every path argument checked before any model loads; the output folder, created last."""
    for flag, paths in (("--ref", args.ref), ("--ref-mask", args.ref_mask)):
        for path in map(Path, paths):
            if path.is_dir():
                raise InputImageError(f"{flag} {path} is a folder: give an image file")
            if not path.is_file():
                raise InputImageError(f"{flag} {path} does not exist")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputImageError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputImageError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    return out


def open_outputs(args: argparse.Namespace, bundle: Bundle, out: Path) -> PngOutputs | CocoOutputs:
    """The output folder's writer, after checking that it holds this job's outputs or none."""
    remove_temporaries(out)
    outputs = CocoOutputs(out, args.category) if args.format == "coco-rle" else PngOutputs(out, args.overlay)
    fingerprint = EncodingFingerprint.of(bundle, bundle.metadata.defaults.svd_components)
    manifest = JobManifest.describe_run(
        asdict(fingerprint), list(zip(args.ref, args.ref_mask)), bundle.metadata.defaults.to_json(),
        args.format, args.precision,
    )
    try:
        claim_folder(out, manifest, overwrite=args.overwrite, has_outputs=outputs.has_outputs())
    except JobMismatchError:
        outputs.close()
        raise
    return outputs


def run(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    targets = expand_targets(args.targets)
    out = check_paths(args)
    outputs = open_outputs(args, bundle, out)
    todo = targets if args.overwrite else [t for t in targets if not outputs.done(t)]
    skipped = len(targets) - len(todo)
    failures: list[tuple[Path, str]] = []
    done = 0
    try:
        segmenter = Segmenter.from_bundle(args.bundle, backend=args.backend, precision=args.precision)
        print(f"insid3-segment: {segmenter.describe()}", file=sys.stderr)
        segmenter.set_reference(args.ref[0], args.ref_mask[0])
        for image, mask in zip(args.ref[1:], args.ref_mask[1:]):
            segmenter.add_reference(image, mask)

        def readable() -> Iterator[PreparedImage]:
            for target in todo:
                try:
                    yield segmenter.prepare(target)
                except InputImageError as exc:
                    failures.append((target, str(exc)))

        with tqdm(total=len(todo), unit="img", desc="segmenting", file=sys.stderr) as bar:
            for item, mask in segmenter.segment_stream(readable(), args.batch_size):
                outputs.write(Path(item.name), mask)
                done += 1
                bar.update(done + len(failures) - bar.n)  # failed targets count as progress too
            bar.update(done + len(failures) - bar.n)
    except KeyboardInterrupt:
        print(
            f"insid3-segment: interrupted: {done} segmented, {skipped} already done, kept in {out}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        outputs.close()
    for target, why in failures:
        print(f"insid3-segment: skipped {target}: {why}", file=sys.stderr)
    print(
        f"insid3-segment: {done} segmented, {skipped} already done, {len(failures)} failed -> {args.out}",
        file=sys.stderr,
    )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        return run(args)
    except Insid3Error as exc:
        print(f"insid3-segment: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the first mask: nothing to keep
        print("insid3-segment: interrupted before any target was segmented", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
