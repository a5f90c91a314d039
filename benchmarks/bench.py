"""`insid3 bench`: FPS, latency per stage and peak memory, beside the authors' way and the paper.

    insid3 bench --bundle DIR [--backend NAME] [--precision fp32|bf16] [--batch-size N ...]
                 [--shots S] [--iters N] [--warmup N] [--targets T] [--images DIR] [--threads N]
                 [--compare-reference] [--json FILE] [--markdown FILE] [--plot FILE.png]

Each side (ours.py, authors_side.py) runs in its own fresh process (isolation.py), their measured
passes interleaved by the side-by-side harness (harness.py); the report writer is writer.py.
Inputs are the drawn scenes unless --images names a folder (naming rule in inputs.py:
NAME.jpg + NAME.mask.png is a reference, every other image a target).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from insid3.benchmarks.writer import ReportFiles, write_report
from insid3.errors import SettingsError
from insid3.format.bundle import Bundle, load_bundle
from insid3.format.refinement import RefineSettings


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
                                "here (insid3 bench crf times ours beside a local build of it)")
        return self


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


PROGRESS_WORDS = {
    "ours": {"start": "cold start (bundle, backend, reference)", "finish": "extras (reference encoding, batch sizes)"},
    "authors' way": {"start": "cold start (torch model)"},
}


def run_benchmark(settings: BenchSettings, say: Callable[[str], None] = print) -> dict:
    """Both sides measured, each in its own process, passes interleaved; the JSON contract's report."""
    from insid3.benchmarks.authors_side import AuthorsSide, AuthorsSpec
    from insid3.benchmarks.environment import environment, load_average
    from insid3.benchmarks.flops import flops_for_arch, roofline
    from insid3.benchmarks.harness import Entrant, run_side_by_side
    from insid3.benchmarks.inputs import folder_inputs, scene_inputs
    from insid3.benchmarks.isolation import SideProcess
    from insid3.benchmarks.ours import OursSide, OursSpec
    from insid3.benchmarks.report import build_report

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
    # Ours starts first; the authors' process is spawned only after our warm-up, so its torch import
    # does not overlap our cold start.
    entrants = [Entrant("ours", lambda: SideProcess(OursSide, ours_spec))]
    if authors_spec is not None:
        entrants.append(Entrant("authors' way", lambda: SideProcess(AuthorsSide, authors_spec)))
    runs = run_side_by_side(entrants, settings.iters, report=say, words=PROGRESS_WORDS)
    ours = runs["ours"].result
    authors = runs["authors' way"].result if authors_spec is not None else None
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


def write_outputs(report: dict, outputs: ReportFiles) -> None:
    from insid3.benchmarks.plot import plot_stages
    from insid3.benchmarks.report import markdown

    write_report(report, outputs, markdown=markdown, plot=plot_stages)
