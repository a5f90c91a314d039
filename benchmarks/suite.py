"""The benchmark suite: small / base / large x 768 / 1024 px, as far as this machine can.

    python -m insid3.benchmarks.suite [--cache ~/.cache/insid3/bundles] [--out benchmarks/results]
        [--sizes small base large] [--resolutions 768 1024] [--backend auto] [--precision fp32]
        [--iters 5] [--compare-reference] [--trt] [--max-cpu-gflops 250] [--flops-only]

For each configuration: the backbone's FLOPs and the floor they imply on this GPU (flops.py),
a random-init bundle exported once into the cache (`insid3-export --random-init`; speed only,
its masks mean nothing), then `insid3-bench` writing OUT/<size>-<res>.json and .md. On a CPU,
configurations above --max-cpu-gflops per image are skipped with a message (the authors' way
encodes two images per target: base at 768 px is ~10 s a target on two cores). The summary
table goes to OUT/suite.md. GPU runs: see benchmarks/GPU.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from insid3.benchmarks.environment import environment
from insid3.benchmarks.flops import DEVICE_PEAK_TFLOPS, device_peak, floor_ms, flops_for_arch

SIZES = ("small", "base", "large")
RESOLUTIONS = (768, 1024)


def console_script(name: str) -> str:
    """The entry point installed beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"insid3.benchmarks.suite: {name} is not installed (pip install -e . in this environment)")
    return found


def flops_table(sizes, resolutions, gpu: str | None) -> str:
    """GFLOP per image and the floor on this GPU and on every GPU in the peak table."""
    names = [label for _, label, _, _ in DEVICE_PEAK_TFLOPS]
    header = ["size", "res", "GFLOP/image", f"floor here ({gpu or 'CPU: peak unknown'})"]
    header += [f"floor {name} (ms)" for name in names]
    rows = [header]
    here = device_peak(gpu)
    for size in sizes:
        for resolution in resolutions:
            flops = flops_for_arch(size, resolution)
            row = [size, str(resolution), f"{flops.gflops:.1f}",
                   f"{floor_ms(flops.total, here[0]):.3f} ms" if here else "-"]
            row += [f"{floor_ms(flops.total, tflops):.3f}" for _, _, tflops, _ in DEVICE_PEAK_TFLOPS]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def ensure_bundle(cache: Path, size: str, resolution: int, trt: bool) -> Path:
    folder = cache / f"{size}-{resolution}{'-trt' if trt else ''}"
    if (folder / "insid3.json").is_file():
        return folder
    command = [console_script("insid3-export"), "--size", size, "--res", str(resolution), "--random-init",
               "--out", str(folder)]
    if not trt:
        command.append("--no-trt")
    print(f"exporting {size} @ {resolution} -> {folder}", flush=True)
    subprocess.run(command, check=True)
    return folder


def bench(bundle: Path, out: Path, name: str, args: argparse.Namespace) -> dict | None:
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    command = [console_script("insid3-bench"), "--bundle", str(bundle), "--backend", args.backend,
               "--precision", args.precision, "--iters", str(args.iters), "--json", str(json_path),
               "--markdown", str(md_path), "--batch-size", *map(str, args.batch_sizes)]
    if args.compare_reference:
        command.append("--compare-reference")
    print(f"\n== {name}: {' '.join(command)}", flush=True)
    if subprocess.run(command).returncode != 0:
        print(f"{name}: insid3-bench failed, see above", flush=True)
        return None
    return json.loads(json_path.read_text())


def summary_row(name: str, report: dict) -> str:
    ours, ref, roof = report["ours"], report["reference"], report["roofline"]
    cells = [
        name, report["config"]["backend"], report["config"]["precision"],
        f"{roof['backbone_gflops_per_image']:.1f}", f"{ours['stages_ms']['backbone']:.1f}",
        "-" if roof["floor_ms"] is None else f"{roof['floor_ms']:.2f}",
        "-" if roof["fraction_of_peak"] is None else f"{100 * roof['fraction_of_peak']:.1f}%",
        f"{ours['fps']:.2f}", "-" if ref is None else f"{ref['fps']:.2f}",
        "-" if report["speedup"] is None else f"{report['speedup']:.2f}x",
        "-" if report["mask_mean_iou_vs_reference"] is None else f"{report['mask_mean_iou_vs_reference']:.4f}",
        f"{ours['peak_memory_mb']:.0f}", "-" if ref is None else f"{ref['peak_memory_mb']:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


SUMMARY_HEADER = (
    "| config | backend | precision | GFLOP/img | backbone ms | floor ms | of peak | ours fps | authors' fps "
    "| speed-up | mask IoU | ours MB | authors' MB |\n|" + "---|" * 13
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "insid3" / "bundles")
    p.add_argument("--out", type=Path, default=Path("benchmarks") / "results")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    p.add_argument("--resolutions", nargs="+", type=int, default=list(RESOLUTIONS))
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--batch-size", dest="batch_sizes", type=int, nargs="+", default=[1])
    p.add_argument("--compare-reference", action="store_true")
    p.add_argument("--trt", action="store_true", help="export TensorRT engines too (GPU machines)")
    p.add_argument("--max-cpu-gflops", type=float, default=250.0,
                   help="on a CPU, skip configurations above this many GFLOP per image")
    p.add_argument("--flops-only", action="store_true", help="print the FLOP table and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    gpu = environment()["gpu"]
    print(flops_table(args.sizes, args.resolutions, gpu))
    print("counted: patch embedding, qkv, QK^T and AV over N + 5 tokens, projection, MLP "
          "(norms, softmax, RoPE, GELU not counted); floors at dense bf16/fp16 tensor peaks")
    if args.flops_only:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        for resolution in args.resolutions:
            name = f"{size}-{resolution}"
            gflops = flops_for_arch(size, resolution).gflops
            if gpu is None and gflops > args.max_cpu_gflops:
                print(f"\n== {name}: skipped on this CPU ({gflops:.0f} GFLOP/image > --max-cpu-gflops "
                      f"{args.max_cpu_gflops:.0f}; raise it to run)", flush=True)
                continue
            report = bench(ensure_bundle(args.cache, size, resolution, args.trt), args.out, name, args)
            if report is not None:
                rows.append(summary_row(name, report))
    summary = "\n".join([SUMMARY_HEADER, *rows])
    (args.out / "suite.md").write_text(summary + "\n")
    print("\n" + summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
