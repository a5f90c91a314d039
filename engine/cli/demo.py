"""The whole path on an embedded default, no downloads, no files of yours.

Exports a random-init ViT-S bundle (once, cached under bundles/), draws reference/target scene
pairs, segments each target from its reference and writes images, masks and overlays to --out.

Random weights see colour and texture only: the IoU printed against the drawn ground truth shows
that the machinery runs end to end, NOT segmentation quality (that needs real DINOv3 weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.cli import arguments as shared
from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.runtime.images import overlay_mask
from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import Insid3Error

DEMO_SEED = 0


def default_bundle(size: str, resolution: int) -> Path:
    return Path("bundles") / f"demo-dinov3-{size}-{resolution}-random-init"


def ensure_bundle(path: Path, size: str, resolution: int, prog: str) -> Path:
    """Export the random-init demo bundle unless it already exists."""
    if (path / "insid3.json").is_file():
        return path
    try:
        from insid3.export import SIZES, ExportSettings, export_bundle
    except ImportError as exc:  # the runtime-only install has no torch
        raise Insid3Error(
            f"no bundle at {path} and the export stage is not installed ({exc.name} missing): "
            "run ./setup.sh, or pass --bundle DIR"
        ) from exc
    print(f"{prog}: exporting a random-init {size} bundle at {resolution}px to {path} (once)", flush=True)
    return export_bundle(
        ExportSettings(
            model=SIZES[size], resolution=resolution, out_dir=path, random_init=True, seed=DEMO_SEED, trt=False
        ),
        report=lambda line: print(f"{prog}: export {line}", flush=True),
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def save_pair(out: Path, index: int, reference, target, mask: np.ndarray) -> None:
    Image.fromarray(reference.image).save(out / f"pair{index}_reference.png")
    Image.fromarray(reference.mask.astype(np.uint8) * 255).save(out / f"pair{index}_reference_mask.png")
    Image.fromarray(target.image).save(out / f"pair{index}_target.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"pair{index}_mask.png")
    overlay_mask(target.image, mask).save(out / f"pair{index}_overlay.png")


def run_demo(args: argparse.Namespace, prog: str) -> int:
    bundle = Path(args.bundle) if args.bundle else ensure_bundle(
        default_bundle(args.size, args.res), args.size, args.res, prog
    )
    start = time.perf_counter()
    segmenter = Segmenter.from_bundle(bundle, backend=args.backend)
    print(f"{prog}: {segmenter.describe()} (loaded in {(time.perf_counter() - start):.1f} s)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores = []
    for index, (reference, target) in enumerate(scene_pairs(args.pairs, seed=DEMO_SEED)):
        segmenter.set_reference(reference.image, reference.mask)
        mask = segmenter.segment(target.image)
        save_pair(out, index, reference, target, mask)
        scores.append(iou(mask, target.mask))
        timings = " ".join(f"{k}={v:.0f}" for k, v in segmenter.last_timings.items())
        print(f"  pair {index}: IoU vs drawn truth {scores[-1]:.2f}; ms: {timings}")
    print(f"{prog}: {len(scores)} pairs written to {out}/ (mean IoU {np.mean(scores):.2f})")
    if segmenter.bundle.metadata.weights.kind == "random-init":
        print(
            f"{prog}: these are RANDOM weights: they segment by colour and texture only. "
            "The IoU shows the pipeline runs end to end, not segmentation quality."
        )
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    shared.add_bundle(parser, required=False, help="use this bundle instead of the random-init demo bundle")
    parser.add_argument("--size", default="small", choices=("small", "base", "large"), help="ViT size to export")
    parser.add_argument("--res", type=shared.positive_int, default=768, help="input resolution of the exported bundle")
    parser.add_argument("--pairs", type=shared.positive_int, default=3, help="synthetic (reference, target) pairs")
    shared.add_backend(parser)
    parser.add_argument("--out", default="demo-out", help="output folder")


def run(args: argparse.Namespace, prog: str) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise shared.UsageError(f"--out {out} exists and is not a folder")
    try:
        return run_demo(args, prog)
    except OSError as exc:  # the output folder cannot be created or written
        raise Insid3Error(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    """`insid3-demo ARGS` in-process (tests)."""
    from insid3.engine.cli.main import run_command

    return run_command("insid3-demo", "demo", argv)


if __name__ == "__main__":
    from insid3.engine.cli.main import alias

    alias("demo")()
