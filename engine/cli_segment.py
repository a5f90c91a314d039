"""`insid3-segment`: batch annotation of files, folders and globs with one cached reference.

    insid3-segment --bundle bundles/dinov3-vits16-768 --ref cat.jpg --ref-mask cat.png \
        --out masks/ photos/ 'more/*.jpg'

One mask PNG per target (same stem), optional overlay JPEGs, or one COCO RLE JSON file with
--format coco-rle. Unreadable targets are reported and skipped; targets whose output exists are
skipped unless --overwrite, so an interrupted job resumes where it stopped.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from insid3.engine.images import PreparedImage, load_rgb, overlay_mask
from insid3.engine.rle import encode_rle
from insid3.engine.segmenter import Segmenter
from insid3.errors import Insid3Error, InputImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
COCO_FILE = "masks.coco.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="insid3-segment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="engine bundle folder (insid3-export)")
    parser.add_argument("--ref", action="append", required=True, help="reference image (repeat for more shots)")
    parser.add_argument("--ref-mask", action="append", required=True, help="mask of the preceding --ref")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime, openvino, torch")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="CPU precision (openvino)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--format", choices=("png", "coco-rle"), default="png")
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


class Outputs:
    """Where results go and which targets are already done."""

    def __init__(self, folder: Path, fmt: str, with_overlay: bool) -> None:
        self.folder, self.fmt, self.with_overlay = folder, fmt, with_overlay
        folder.mkdir(parents=True, exist_ok=True)
        self.coco_path = folder / COCO_FILE
        self.coco: dict[str, dict] = {}
        if fmt == "coco-rle" and self.coco_path.is_file():
            self.coco = {entry["file_name"]: entry for entry in json.loads(self.coco_path.read_text())["annotations"]}

    def done(self, target: Path) -> bool:
        if self.fmt == "coco-rle":
            return str(target) in self.coco
        return (self.folder / f"{target.stem}.png").is_file()

    def write(self, target: Path, mask: np.ndarray) -> None:
        if self.fmt == "png":
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(self.folder / f"{target.stem}.png")
        else:
            height, width = mask.shape
            self.coco[str(target)] = {
                "file_name": str(target), "height": height, "width": width,
                "area": int(mask.sum()), "segmentation": encode_rle(mask),
            }
        if self.with_overlay:
            overlay_mask(np.asarray(load_rgb(target)), mask).save(self.folder / f"{target.stem}.overlay.jpg", quality=90)

    def close(self) -> None:
        if self.fmt == "coco-rle":
            self.coco_path.write_text(json.dumps({"annotations": list(self.coco.values())}) + "\n")


def run(args: argparse.Namespace) -> int:
    targets = expand_targets(args.targets)
    outputs = Outputs(Path(args.out), args.format, args.overlay)
    todo = targets if args.overwrite else [t for t in targets if not outputs.done(t)]
    skipped = len(targets) - len(todo)
    segmenter = Segmenter.from_bundle(args.bundle, backend=args.backend, precision=args.precision)
    print(f"insid3-segment: {segmenter.describe()}", file=sys.stderr)
    segmenter.set_reference(args.ref[0], args.ref_mask[0])
    for image, mask in zip(args.ref[1:], args.ref_mask[1:]):
        segmenter.add_reference(image, mask)

    failures: list[tuple[Path, str]] = []

    def readable() -> Iterator[PreparedImage]:
        for target in todo:
            try:
                yield segmenter.prepare(target)
            except InputImageError as exc:
                failures.append((target, str(exc)))

    done = 0
    try:
        with tqdm(total=len(todo), unit="img", desc="segmenting", file=sys.stderr) as bar:
            for item, mask in segmenter.segment_stream(readable(), args.batch_size):
                outputs.write(Path(item.name), mask)
                done += 1
                bar.update(done + len(failures) - bar.n)  # failed targets count as progress too
            bar.update(done + len(failures) - bar.n)
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


if __name__ == "__main__":
    sys.exit(main())
