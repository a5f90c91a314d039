"""`insid3 bench` and its sub-verbs: how fast, beside the authors' way and the paper.

    insid3 bench --bundle DIR [--backend NAME] [--batch-size N ...] [--compare-reference] [--json F]
    insid3 bench kernels | concepts | calibrate | match | crf | crf-build | serve | ray-jobs | suite | gpu-acceptance ...

Each tool's measuring lives in benchmarks/ and takes a frozen settings dataclass; this module holds
their flags only. Flags named as the settings' fields are copied by `settings_of`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from insid3.engine.cli import arguments as shared
from insid3.engine.cli.runner import Command

T = TypeVar("T")


def settings_of(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """`cls` built from the flags of the same names (lists become tuples), `given` overriding."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}  # type: ignore[arg-type]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**{**values, **given})


# --- insid3 bench: ours beside the authors' way -------------------------------------------------------


def configure_side_by_side(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, type=Path, help="bundle folder written by insid3 export")
    shared.add_backend(parser)
    shared.add_precision(parser)
    parser.add_argument("--batch-size", dest="batch_sizes", type=int, nargs="+", default=[1],
                        help="throughput through segment_batch at each of these batch sizes")
    parser.add_argument("--shots", type=int, default=1, help="reference shots (cached once on our side)")
    parser.add_argument("--iters", type=int, default=5, help="measured passes over the targets (median of these)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before measuring")
    parser.add_argument("--targets", type=int, default=3, help="drawn target scenes (ignored with --images)")
    parser.add_argument("--images", type=Path, help="folder: NAME.jpg + NAME.mask.png references, other images targets")
    parser.add_argument("--threads", type=int, help="CPU threads for both sides (default: the libraries' own)")
    shared.add_refine(parser)
    parser.add_argument("--compare-reference", action="store_true",
                        help="also run the authors' way (torch + sklearn) on the same images and weights")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--markdown", type=Path, help="write the report as markdown")
    parser.add_argument("--plot", type=Path, help="write a PNG bar chart of latency per stage")


def run_side_by_side(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.bench import BenchSettings, run_benchmark, write_outputs
    from insid3.benchmarks.writer import ReportFiles

    settings = settings_of(BenchSettings, args, batch_sizes=tuple(sorted(set(args.batch_sizes))),
                           refine=shared.refine_from(args)).validated()
    outputs = settings_of(ReportFiles, args)
    outputs.check()
    try:
        report = run_benchmark(settings, say=lambda line: print(f"{prog}: {line}", file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted: no report was written", file=sys.stderr)
        return 130
    from insid3.benchmarks.report import terminal_table

    print(terminal_table(report))
    write_outputs(report, outputs)
    return 0


SIDE_BY_SIDE = Command(
    "FPS, latency per stage and peak memory, beside the authors' way and the paper (benchmarks/bench.py). Each side "
    "runs in its own process, their passes interleaved; inputs are drawn scenes unless --images names a folder.",
    configure_side_by_side, run_side_by_side)


# --- insid3 bench suite -----------------------------------------------------------------------------


def configure_suite(parser: argparse.ArgumentParser) -> None:
    from insid3.benchmarks.suite import RESOLUTIONS, SIZES

    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "insid3" / "bundles",
                        help="where the exported bundles are kept")
    parser.add_argument("--out", type=Path, default=Path("benchmarks") / "results", help="reports folder")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES, help="ViT sizes")
    parser.add_argument("--resolutions", nargs="+", type=int, default=list(RESOLUTIONS), help="input sides")
    shared.add_backend(parser)
    shared.add_precision(parser)
    parser.add_argument("--iters", type=int, default=5, help="measured passes per configuration")
    parser.add_argument("--batch-size", dest="batch_sizes", type=int, nargs="+", default=[1], help="batch sizes")
    parser.add_argument("--compare-reference", action="store_true", help="also run the authors' way")
    parser.add_argument("--trt", action="store_true", help="export TensorRT engines too (GPU machines)")
    parser.add_argument("--max-cpu-gflops", type=float, default=250.0,
                        help="on a CPU, skip configurations above this many GFLOP per image")
    parser.add_argument("--flops-only", action="store_true", help="print the FLOP table and stop")


def run_suite(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.suite import SuiteSettings, run

    return run(settings_of(SuiteSettings, args))


SUITE = Command("Every ViT size x resolution through `insid3 bench`, one summary table (benchmarks/suite.py).",
                configure_suite, run_suite)


# --- insid3 bench kernels ---------------------------------------------------------------------------


def configure_kernels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="ViT-S 768px only")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (>= 5; median reported)")


def run_kernels(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.kernels.tables import KernelBenchSettings, run

    return run(settings_of(KernelBenchSettings, args))


KERNELS = Command("Every table of the kernel benchmark (clustering, memory, the steps), as markdown "
                  "(benchmarks/kernels/).", configure_kernels, run_kernels)


# --- insid3 bench concepts --------------------------------------------------------------------------


def configure_concepts(parser: argparse.ArgumentParser) -> None:
    shared.add_bundle(parser, help="bundle folder (e.g. insid3 export --size small --res 768)")
    shared.add_backend(parser)
    parser.add_argument("--concepts", type=int, default=10, help="concepts found together")
    parser.add_argument("--repeats", type=int, default=5, help="measured passes (>= 5; medians reported)")
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"), help="target size")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the N separate segment() calls")
    parser.add_argument("--json", type=Path, help="also write the numbers here")


def run_concepts(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.concepts import ConceptsBenchSettings, run

    return run(settings_of(ConceptsBenchSettings, args))


CONCEPTS = Command("N concepts found in one pass beside N single-concept passes (benchmarks/concepts.py).",
                   configure_concepts, run_concepts)


# --- insid3 bench calibrate -------------------------------------------------------------------------


def configure_calibrate(parser: argparse.ArgumentParser) -> None:
    shared.add_bundle(parser, help="bundle folder (e.g. insid3 export --size small --res 448 --random-init)")
    shared.add_backend(parser)
    parser.add_argument("--examples", type=int, default=6, help="labelled scenes of the concept (positive episodes)")
    parser.add_argument("--negatives", type=int, default=2, help="scenes without it (negative episodes)")
    parser.add_argument("--passes", type=int, default=3, help="measured passes, alternating which side goes first")
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"), help="scene size")
    parser.add_argument("--out", type=Path, default=None, help="also write OUT.json and OUT.md")


def run_calibrate(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.calibrate import CalibrateBenchSettings, run

    return run(settings_of(CalibrateBenchSettings, args, bundle=Path(args.bundle)))


CALIBRATE = Command("a 125-setting calibration sweep beside one setting on the same episodes "
                    "(benchmarks/calibrate.py).", configure_calibrate, run_calibrate)


# --- insid3 bench match -----------------------------------------------------------------------------


def configure_match(parser: argparse.ArgumentParser) -> None:
    shared.add_bundle(parser)
    shared.add_backend(parser)
    parser.add_argument("--points", type=int, nargs="+", default=[1, 10, 100], help="keypoint counts")
    shared.add_hyperparameters(parser, clustering=False)
    parser.add_argument("--original", action="store_true", help="match the original features")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median reported)")


def run_match(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.correspondence import MatchBenchSettings, run

    return run(settings_of(MatchBenchSettings, args))


MATCH = Command("Keypoint matching: ours beside the authors' way on the same features "
                "(benchmarks/correspondence.py).", configure_match, run_match)


# --- insid3 bench crf / crf-build -------------------------------------------------------------------


def configure_crf(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[768, 1024], help="refinement sizes S (px)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side (medians)")
    parser.add_argument("--image", type=Path, help="a target photo (default: a drawn scene)")
    parser.add_argument("--mask", type=Path, help="its true mask (with --image)")
    parser.add_argument("--authors-crf", type=Path, help="a build of the authors' library (insid3 bench crf-build)")
    parser.add_argument("--bundle", type=Path, action="append", default=[], help="also time the pipeline on it")
    parser.add_argument("--machine", default="this machine", help="how to describe the machine in the report")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--markdown", type=Path, help="write the report as markdown")


def run_crf(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.crf import CrfBenchSettings, run

    return run(settings_of(CrfBenchSettings, args, command=args.command_line))


CRF = Command("What the dense-CRF refinement (--refine crf) costs, beside the authors' library "
              "(benchmarks/crf.py).", configure_crf, run_crf)


def configure_crf_build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crf-source", type=Path, required=True, help="a snapshot of netw0rkf10w/CRF")
    parser.add_argument("--insid3-source", type=Path, required=True, help="a snapshot of visinf/INSID3")
    parser.add_argument("--out", type=Path, required=True, help="folder for the build")


def run_crf_build(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.crf_authors import CrfBuildSettings, run

    return run(settings_of(CrfBuildSettings, args))


CRF_BUILD = Command("Build the authors' CRF library on this machine, for `insid3 bench crf --authors-crf` "
                    "(benchmarks/crf_authors.py; optional).", configure_crf_build, run_crf_build)


# --- insid3 bench serve (load generator) ------------------------------------------------------------


def configure_loadgen(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--bundle", type=Path, help="bundle to serve (one server per --max-batch value)")
    target.add_argument("--url", help="measure this running server instead (loopback only)")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[8, 1], help="servers to compare")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="the servers' batching wait")
    shared.add_backend(parser)
    parser.add_argument("--requests", type=int, default=200, help="requests per server (fixed)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument("--time-limit", type=float, default=90.0, help="seconds per server before it stops sending")
    parser.add_argument("--image-size", default="480x640", help="target H x W")
    parser.add_argument("--json", type=Path, help="also write the results here")


def run_loadgen(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.loadgen import LoadSettings, run

    return run(settings_of(LoadSettings, args))


LOADGEN = Command("Load on the HTTP service: throughput, latency and batch sizes, one server per --max-batch "
                  "(benchmarks/loadgen.py).", configure_loadgen, run_loadgen)


# --- insid3 bench ray-jobs --------------------------------------------------------------------------


def configure_ray_jobs(parser: argparse.ArgumentParser) -> None:
    shared.add_bundle(parser)
    parser.add_argument("--targets", type=int, default=24, help="drawn target images")
    parser.add_argument("--size", default="480x640", help="targets' HxW")
    shared.add_backend(parser, default="onnxruntime", help="the actors' and the local run's backend")
    parser.add_argument("--batch-size", type=int, default=4, help="targets per backbone call")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="CPUs the Ray pools ask for in all")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")


def run_ray_jobs(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.ray_jobs import RayJobsBenchSettings, run

    return run(settings_of(RayJobsBenchSettings, args))


RAY_JOBS = Command("`insid3 segment`'s throughput on this machine, locally and as Ray Data pipelines of 1 and 2 "
                   "actors (benchmarks/ray_jobs.py).", configure_ray_jobs, run_ray_jobs)


# --- insid3 bench gpu-acceptance / gpu-phase ----------------------------------------------------------


def configure_gpu_acceptance(parser: argparse.ArgumentParser) -> None:
    from insid3.benchmarks.gpu_acceptance import DEFAULT_BUDGET_S, PHASE_NAMES

    parser.add_argument("--out", type=Path, required=True, help="folder for the report (JSON, markdown, logs)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for bundles and scratch files (default: a new temporary folder)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="wall-clock budget of the run")
    parser.add_argument("--phases", default=",".join(PHASE_NAMES), help="comma-separated subset of the phases")
    parser.add_argument("--simulate-cpu", action="store_true",
                        help="a dry run on the CPU: every phase's logic, budgets and report, GPU calls replaced")


def run_gpu_acceptance(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.gpu_acceptance import AcceptanceSettings, run

    return run(settings_of(AcceptanceSettings, args))


GPU_ACCEPTANCE = Command("The prepared GPU acceptance run: tests, parity, side-by-side speed, RoPE factors "
                         "(benchmarks/gpu_acceptance.py, benchmarks/GPU.md).", configure_gpu_acceptance,
                         run_gpu_acceptance)


def configure_gpu_phase(parser: argparse.ArgumentParser) -> None:
    from insid3.benchmarks.gpu_phases import PHASES

    parser.add_argument("phase", choices=tuple(PHASES), help="the phase to run")
    parser.add_argument("--work", type=Path, required=True, help="the run's bundles and scratch files")
    parser.add_argument("--out", type=Path, required=True, help="the run's report folder")
    parser.add_argument("--result", type=Path, required=True, help="where the phase writes its result")
    parser.add_argument("--seconds", type=float, required=True, help="the phase's time limit")
    parser.add_argument("--simulate-cpu", action="store_true", help="the phase's logic on the CPU")


def run_gpu_phase(args: argparse.Namespace, prog: str) -> int:
    from insid3.benchmarks.gpu_phases import PhaseRunSettings, run

    return run(settings_of(PhaseRunSettings, args))


GPU_PHASE = Command("One phase of the GPU acceptance run, in its own process (gpu-acceptance starts these; "
                    "benchmarks/gpu_phases.py).", configure_gpu_phase, run_gpu_phase)


def main(argv: list[str] | None = None) -> int:
    """`insid3-bench ARGS` in-process (tests)."""
    from insid3.engine.cli.main import run_command

    return run_command("insid3-bench", "bench", argv)


if __name__ == "__main__":
    from insid3.engine.cli.main import alias

    alias("bench")()
