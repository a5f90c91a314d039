"""The authors' way as a benchmark side, in its own process: same images, weights and loop as ours."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from insid3.engine.bench import authors_way
from insid3.engine.bench.inputs import BenchInputs
from insid3.engine.bench.memory import MemoryReport, current_rss_mb, memory_report, sampling, torch_high_water
from insid3.engine.bench.passes import MeasuredSide, PassRecord, pass_times
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
    warmup: int
    inputs: BenchInputs


@dataclass(frozen=True)
class ReferenceResult:
    summary: dict
    memory: MemoryReport
    cold_start_ms: float
    masks: tuple[np.ndarray, ...]
    device: str


class ReferenceSide(MeasuredSide):
    """start -> warm_up -> measure_pass (x iters, interleaved with ours) -> finish."""

    def __init__(self, spec: ReferenceSpec) -> None:
        self.spec = spec
        self.rss_baseline = current_rss_mb()
        self.passes: list[PassRecord] = []

    def start(self) -> float:
        """Cold start: torch import, model rebuilt from the bundle's weights -> first mask."""
        begin = time.perf_counter()
        import torch

        if self.spec.num_threads:
            torch.set_num_threads(self.spec.num_threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.high_water = torch_high_water(self.device)
        self.model = authors_way.load_model(self.spec.bundle, self.device)
        self.synchronize = sampling(self.model.synchronizer(), self.high_water)
        authors_way.segment(self.model, self.spec.inputs.shots, self.spec.inputs.targets[0])
        self.synchronize()
        self.cold_start_ms = (time.perf_counter() - begin) * 1e3
        return self.cold_start_ms

    def segment_one(self, target):
        clock = StageClock(self.model.synchronizer())
        return authors_way.segment(self.model, self.spec.inputs.shots, target, clock), clock.ms

    def finish(self) -> ReferenceResult:
        return ReferenceResult(
            summary=summarise(pass_times(self.passes)),
            memory=memory_report(self.high_water, self.device != "cpu", self.rss_baseline),
            cold_start_ms=self.cold_start_ms,
            masks=self.passes[-1].masks,
            device=self.device,
        )
