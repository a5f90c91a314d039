"""The benchmark suite: small / base / large x 768 / 1024 px, as far as this machine can.

    insid3 bench suite [--cache ~/.cache/insid3/bundles] [--out benchmarks/results]
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

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from insid3.benchmarks.environment import environment
from insid3.benchmarks.flops import DEVICE_PEAK_TFLOPS, device_peak, floor_ms, flops_for_arch
from insid3.benchmarks.writer import table, table_row, write_text

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


def bench(bundle: Path, out: Path, name: str, args: SuiteSettings) -> dict | None:
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
    return table_row(cells)


SUMMARY_HEADER = "\n".join(table(
    ("config", "backend", "precision", "GFLOP/img", "backbone ms", "floor ms", "of peak", "ours fps", "authors' fps",
     "speed-up", "mask IoU", "ours MB", "authors' MB"), ()))


@dataclass(frozen=True, kw_only=True)
class SuiteSettings:
    cache: Path = Path.home() / ".cache" / "insid3" / "bundles"
    out: Path = Path("benchmarks") / "results"
    sizes: tuple[str, ...] = tuple(SIZES)
    resolutions: tuple[int, ...] = tuple(RESOLUTIONS)
    backend: str = "auto"
    precision: str = "fp32"
    iters: int = 5
    batch_sizes: tuple[int, ...] = (1,)
    compare_reference: bool = False
    trt: bool = False
    max_cpu_gflops: float = 250.0
    flops_only: bool = False


def run(settings: SuiteSettings) -> int:
    gpu = environment()["gpu"]
    print(flops_table(settings.sizes, settings.resolutions, gpu))
    print("counted: patch embedding, qkv, QK^T and AV over N + 5 tokens, projection, MLP "
          "(norms, softmax, RoPE, GELU not counted); floors at dense bf16/fp16 tensor peaks")
    if settings.flops_only:
        return 0
    settings.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in settings.sizes:
        for resolution in settings.resolutions:
            name = f"{size}-{resolution}"
            gflops = flops_for_arch(size, resolution).gflops
            if gpu is None and gflops > settings.max_cpu_gflops:
                print(f"\n== {name}: skipped on this CPU ({gflops:.0f} GFLOP/image > --max-cpu-gflops "
                      f"{settings.max_cpu_gflops:.0f}; raise it to run)", flush=True)
                continue
            report = bench(ensure_bundle(settings.cache, size, resolution, settings.trt), settings.out, name, settings)
            if report is not None:
                rows.append(summary_row(name, report))
    summary = "\n".join([SUMMARY_HEADER, *rows])
    write_text(settings.out / "suite.md", summary + "\n")
    print("\n" + summary)
    return 0
