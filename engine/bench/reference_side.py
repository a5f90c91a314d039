"""The authors' way, measured in its own process: same images, same weights, same loop as ours."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from insid3.engine.bench import authors_way
from insid3.engine.bench.inputs import BenchInputs
from insid3.engine.bench.memory import MemoryReport, current_rss_mb, memory_report, sampling, torch_high_water
from insid3.engine.bench.passes import run_passes
from insid3.engine.bench.stats import summarise
from insid3.engine.timing import StageClock

DESCRIPTION = (
    "torch eager backbone (fp32) encoding reference(s) and target together for every target, "
    "sklearn AgglomerativeClustering on a float64 N x N matrix, per-cluster Python loops"
)


@dataclass(frozen=True)
class ReferenceSpec:
    bundle: str
    num_threads: int | None
    iters: int
    warmup: int
    inputs: BenchInputs


@dataclass(frozen=True)
class ReferenceResult:
    summary: dict
    memory: MemoryReport
    cold_start_ms: float
    masks: tuple[np.ndarray, ...]
    device: str


def measure_reference(spec: ReferenceSpec) -> ReferenceResult:
    import torch

    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    high_water = torch_high_water(device)
    rss_baseline = current_rss_mb()
    start = time.perf_counter()
    model = authors_way.load_model(spec.bundle, device)
    synchronize = sampling(model.synchronizer(), high_water)
    authors_way.segment(model, spec.inputs.shots, spec.inputs.targets[0])
    synchronize()
    cold_ms = (time.perf_counter() - start) * 1e3

    def segment_one(target):
        clock = StageClock(model.synchronizer())
        return authors_way.segment(model, spec.inputs.shots, target, clock), clock.ms

    run = run_passes(segment_one, spec.inputs.targets, spec.iters, spec.warmup, synchronize)
    return ReferenceResult(
        summary=summarise(run.times),
        memory=memory_report(high_water, device != "cpu", rss_baseline),
        cold_start_ms=cold_ms,
        masks=run.masks,
        device=device,
    )
