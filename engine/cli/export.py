"""A DINOv3 checkpoint (or a seeded random init) -> an engine bundle folder.

    insid3 export --size large --res 1024 --weights dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth
    insid3 export --size small --res 768 --random-init --seed 0

Prints a line per step and a summary (artifacts, sizes, parity, seconds). A failed export
leaves no partial folder. torch loads only once the flags are checked.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from insid3.engine.cli import arguments as shared

__all__ = ["configure", "main", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    from insid3.export.config import SIZES

    parser.add_argument("--size", required=True, choices=list(SIZES), help="DINOv3 ViT-S/B/L (patch 16)")
    parser.add_argument("--res", type=int, required=True, help="input side R: a multiple of 16 in [224, 2048]")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, help="Meta hub .pth, or a Hugging Face folder")
    source.add_argument("--random-init", action="store_true", help="seeded random weights (demos, speed)")
    parser.add_argument("--seed", type=int, help="seed of --random-init (default: 0)")
    parser.add_argument("--out", type=Path, help="bundle folder (default: bundles/dinov3-vit{s,b,l}16-R)")
    trt = parser.add_mutually_exclusive_group()
    trt.add_argument("--trt", dest="trt", action="store_true", default=None,
                     help="build a TensorRT engine (default: when TensorRT and a CUDA device are present)")
    trt.add_argument("--no-trt", dest="trt", action="store_false", help="skip the TensorRT engine")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"], help="engine precision")
    parser.add_argument("--max-batch", type=int, default=8, help="largest engine batch")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset, 18..22")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    rescale = parser.add_mutually_exclusive_group()
    rescale.add_argument("--rope-rescale", type=Path, metavar="FILE",
                         help="build the positional basis with these per-block RoPE rescale factors (default: eval mode)")
    rescale.add_argument("--rope-rescale-seed", type=int, metavar="N",
                         help="... with the factors a CUDA device draws after torch.manual_seed(N), as predicted "
                              "on this machine (export/rope_rescale.py); the authors' run is N = 0")


def rope_rescale_of(args: argparse.Namespace, config) -> tuple[tuple[float, ...] | None, str | None]:
    """The factors and where they came from, checked against the size's depth before exporting."""
    if args.rope_rescale is None and args.rope_rescale_seed is None:
        return None, None
    from insid3.export.positional_basis import read_rope_rescale
    from insid3.export.rope_rescale import predicted_cuda_factors

    if args.rope_rescale is not None:
        return read_rope_rescale(args.rope_rescale, config.name, config.depth), f"file {args.rope_rescale}"
    seed = args.rope_rescale_seed
    return tuple(predicted_cuda_factors(config.depth, seed)), f"CUDA draws after torch.manual_seed({seed}), predicted"


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def summary_lines(folder: Path, seconds: float) -> list[str]:
    from insid3.format.bundle import load_bundle

    meta = load_bundle(folder).metadata
    lines = [
        f"bundle {folder}: DINOv3 {meta.size} ({meta.arch}), {meta.resolution}x{meta.resolution}, "
        f"{meta.patch_grid[0]}x{meta.patch_grid[1]} patches x {meta.embed_dim}, "
        f"svd_components {meta.defaults.svd_components}, weights {meta.weights.kind}",
    ]
    for artifact in meta.artifacts:
        parity = artifact.parity
        figures = (
            f", max abs {parity['max_abs_error']:.1e}, min cos {parity['min_cosine']:.6f} vs {parity['against']}"
            if parity else ""
        )
        lines.append(f"  {artifact.file}: {artifact.kind}, {artifact.precision}, {human_bytes(artifact.bytes)}{figures}")
    if meta.artifact("tensorrt") is None:
        lines.append("  no TensorRT engine (see the skip reason above)")
    lines.append(f"  total {seconds:.1f} s")
    return lines


def run(args: argparse.Namespace, prog: str) -> int:
    if args.weights is None and not args.random_init:
        raise shared.UsageError("give --weights PATH or --random-init")
    if args.seed is not None and not args.random_init:
        raise shared.UsageError("--seed only applies to --random-init")
    from insid3.export.config import SIZES
    from insid3.export.pipeline import ExportSettings, default_out_dir, export_bundle

    config = SIZES[args.size]
    started = time.perf_counter()
    rope_rescale, rope_rescale_source = rope_rescale_of(args, config)
    settings = ExportSettings(
        model=config, resolution=args.res, rope_rescale=rope_rescale, rope_rescale_source=rope_rescale_source,
        out_dir=args.out or default_out_dir(config, args.res),
        weights=args.weights, random_init=args.random_init, seed=0 if args.seed is None else args.seed, trt=args.trt,
        precision=args.precision, max_batch=args.max_batch, opset=args.opset, force=args.force,
    ).validated()
    folder = export_bundle(settings, report=lambda line: print(line, flush=True))
    print("\n".join(summary_lines(folder, time.perf_counter() - started)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`insid3-export ARGS` in-process (tests); `python -m insid3.engine.cli.export` too."""
    from insid3.engine.cli.main import run_command

    return run_command("insid3-export", "export", argv)


if __name__ == "__main__":
    from insid3.engine.cli.main import alias

    alias("export")()
