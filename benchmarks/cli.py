"""insid3-bench: FPS, latency per stage and peak memory, beside the authors' way and the paper.

    insid3-bench --bundle DIR [--backend NAME] [--precision fp32|bf16] [--batch-size N ...]
                 [--shots S] [--iters N] [--warmup N] [--targets T] [--images DIR] [--threads N]
                 [--compare-reference] [--json FILE] [--markdown FILE] [--plot FILE.png]

Each side runs in its own fresh process, their measured passes interleaved (side_by_side.py).
Inputs are the drawn scenes unless --images names a folder (naming rule in inputs.py:
NAME.jpg + NAME.mask.png is a reference, every other image a target).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from insid3.errors import Insid3Error, SettingsError
from insid3.format.bundle import Bundle, load_bundle
from insid3.format.refinement import RefineSettings, add_refine_arguments, refine_from_args

PROG = "insid3-bench"


@dataclass(frozen=True)
class BenchSettings:
    bundle: Path
    backend: str
    precision: str
    batch_sizes: tuple[int, ...]
    shots: int
    iters: int
    warmup: int
    targets: int
    images: Path | None
    threads: int | None
    compare_reference: bool
    refine: RefineSettings = RefineSettings()

    def validated(self) -> "BenchSettings":
        for name, value, least in (("--shots", self.shots, 1), ("--iters", self.iters, 1),
                                   ("--warmup", self.warmup, 0), ("--targets", self.targets, 1)):
            if value < least:
                raise SettingsError(f"{name} must be >= {least}, got {value}")
        bad = [b for b in self.batch_sizes if b < 1]
        if bad:
            raise SettingsError(f"--batch-size must be >= 1, got {bad[0]}")
        if self.threads is not None and self.threads < 1:
            raise SettingsError(f"--threads must be >= 1, got {self.threads}")
        if self.refine.crf and self.compare_reference:
            raise SettingsError("--refine crf cannot --compare-reference: the authors' CRF library is not installable "
                                "here (python -m insid3.benchmarks.crf times ours beside a local build of it)")
        return self


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are one line too (argparse would print the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder written by insid3-export")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, openvino, tensorrt, torch")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="CPU precision (bf16: OpenVINO on AMX CPUs)")
    p.add_argument("--batch-size", dest="batch_sizes", type=int, nargs="+", default=[1],
                   help="throughput through segment_batch at each of these batch sizes")
    p.add_argument("--shots", type=int, default=1, help="reference shots (cached once on our side)")
    p.add_argument("--iters", type=int, default=5, help="measured passes over the targets (median of these)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before measuring")
    p.add_argument("--targets", type=int, default=3, help="drawn target scenes (ignored with --images)")
    p.add_argument("--images", type=Path, help="folder: NAME.jpg + NAME.mask.png references, other images targets")
    p.add_argument("--threads", type=int, help="CPU threads for both sides (None: the libraries' own)")
    add_refine_arguments(p)
    p.add_argument("--compare-reference", action="store_true",
                   help="also run the authors' way (torch + sklearn) on the same images and weights")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("--markdown", type=Path, help="write the report as markdown")
    p.add_argument("--plot", type=Path, help="write a PNG bar chart of latency per stage")
    return p


def settings_from(args: argparse.Namespace) -> BenchSettings:
    return BenchSettings(
        bundle=args.bundle, backend=args.backend, precision=args.precision,
        batch_sizes=tuple(sorted(set(args.batch_sizes))), shots=args.shots, iters=args.iters, warmup=args.warmup,
        targets=args.targets, images=args.images, threads=args.threads,
        compare_reference=args.compare_reference, refine=refine_from_args(args),
    ).validated()


def check_outputs(args: argparse.Namespace) -> None:
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise SettingsError(f"--plot {args.plot}: the chart is written as PNG, name it *.png")
    for path in (args.json, args.markdown, args.plot):
        if path is not None and not path.parent.is_dir():
            raise SettingsError(f"cannot write {path}: folder {path.parent} does not exist")


def check_reference_requirements() -> None:
    missing = [name for name in ("torch", "sklearn") if importlib.util.find_spec(name) is None]
    if missing:
        raise SettingsError(
            f"--compare-reference needs {' and '.join(missing)} (pip install 'insid3[export,bench]')"
        )


def check_backend(bundle: Bundle, settings: BenchSettings) -> None:
    """Fail in one line before any process starts when the backend cannot run here."""
    from insid3.engine.runtime.backends import BACKENDS
    from insid3.engine.runtime.backends.base import BackendOptions
    from insid3.errors import BackendUnavailableError

    if settings.backend == "auto":
        return
    if settings.backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {settings.backend!r}: choose one of auto, {', '.join(BACKENDS)}")
    reason = BACKENDS[settings.backend].unavailable_reason(bundle, BackendOptions(precision=settings.precision))
    if reason is not None:
        raise BackendUnavailableError(f"backend {settings.backend!r} cannot run here: {reason}")


def run_benchmark(settings: BenchSettings) -> dict:
    """Both sides measured, each in its own process, passes interleaved; the JSON contract's report."""
    from insid3.benchmarks.authors_side import AuthorsSpec
    from insid3.benchmarks.environment import environment, load_average
    from insid3.benchmarks.flops import flops_for_arch, roofline
    from insid3.benchmarks.inputs import folder_inputs, scene_inputs
    from insid3.benchmarks.ours import OursSpec
    from insid3.benchmarks.report import build_report
    from insid3.benchmarks.side_by_side import measure_side_by_side

    bundle = load_bundle(settings.bundle)
    check_backend(bundle, settings)
    if settings.compare_reference:
        check_reference_requirements()
    inputs = (
        folder_inputs(settings.images, settings.shots)
        if settings.images is not None
        else scene_inputs(settings.shots, settings.targets)
    )
    ours_spec = OursSpec(
        bundle=str(bundle.folder), backend=settings.backend, precision=settings.precision,
        num_threads=settings.threads, batch_sizes=settings.batch_sizes, iters=settings.iters,
        warmup=settings.warmup, inputs=inputs, refine=settings.refine,
    )
    authors_spec = (
        AuthorsSpec(bundle=str(bundle.folder), num_threads=settings.threads, warmup=settings.warmup, inputs=inputs)
        if settings.compare_reference
        else None
    )
    load_at_start = load_average()
    ours, authors = measure_side_by_side(
        ours_spec, authors_spec, settings.iters, report=lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True)
    )
    env = environment(load_at_start)
    device = env["gpu"] if ours.backend["device"] != "cpu" else None
    roof = roofline(flops_for_arch(bundle.metadata.arch, bundle.metadata.resolution), device,
                    ours.summary["stages_ms"]["backbone"])
    return build_report(env, config_of(bundle, settings, ours.backend, inputs.source, len(inputs.targets)),
                        ours, authors, roof)


def config_of(bundle: Bundle, settings: BenchSettings, backend: dict, source: str, targets: int) -> dict:
    meta = bundle.metadata
    return {
        "size": meta.size, "resolution": meta.resolution, "arch": meta.arch,
        "weights": meta.weights.kind, "backend": backend["name"], "precision": backend["precision"],
        "shots": settings.shots, "targets": targets, "iters": settings.iters, "warmup": settings.warmup,
        "batch_sizes": list(settings.batch_sizes), "threads": settings.threads, "inputs": source,
        "bundle": str(bundle.folder), "refine": settings.refine.to_json(),
    }


def write_outputs(report: dict, args: argparse.Namespace) -> None:
    from insid3.benchmarks.report import markdown

    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(report))
    if args.plot:
        from insid3.benchmarks.plot import plot_stages

        plot_stages(report, args.plot)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = settings_from(args)
        check_outputs(args)
        report = run_benchmark(settings)
        from insid3.benchmarks.report import terminal_table

        print(terminal_table(report))
        write_outputs(report, args)
    except Insid3Error as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: no report was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
