"""The authors' way as a benchmark side, in its own process: same images, weights and loop as ours.

The side runs insid3.authors_way, the transcription of the published pipeline; it and torch are
imported in the side's own process only (the harness itself runs without torch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from insid3.benchmarks.inputs import BenchInputs
from insid3.benchmarks.memory import MemoryReport, current_rss_mb, memory_report, sampling, torch_high_water
from insid3.benchmarks.passes import MeasuredSide, pass_times
from insid3.benchmarks.stats import summarise
from insid3.engine.runtime.timing import StageClock

DESCRIPTION = (
    "torch eager backbone (fp32) encoding reference(s) and target together for every target, "
    "sklearn AgglomerativeClustering on the float32 N x N distance matrix, per-cluster Python loops"
)


@dataclass(frozen=True)
class AuthorsSpec:
    bundle: str
    num_threads: int | None
    warmup: int
    inputs: BenchInputs


@dataclass(frozen=True)
class AuthorsResult:
    summary: dict
    memory: MemoryReport
    cold_start_ms: float
    masks: tuple[np.ndarray, ...]
    device: str


class AuthorsSide(MeasuredSide):
    """start -> warm_up -> measure_pass (x iters, interleaved with ours) -> finish."""

    def __init__(self, spec: AuthorsSpec) -> None:
        super().__init__(spec.inputs.targets, spec.warmup)
        self.spec = spec
        self.rss_baseline = current_rss_mb()

    def start(self) -> float:
        """Cold start: torch import, model rebuilt from the bundle's weights -> first mask."""
        begin = time.perf_counter()
        import torch

        from insid3 import authors_way

        if self.spec.num_threads:
            torch.set_num_threads(self.spec.num_threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.high_water = torch_high_water(self.device)
        self.authors_way = authors_way  # imported here: torch loads in this process only
        self.model = authors_way.load_model(self.spec.bundle, self.device)
        self.synchronize = sampling(self.model.synchronizer(), self.high_water)
        self.authors_way.segment(self.model, self.spec.inputs.shots, self.spec.inputs.targets[0])
        self.synchronize()
        self.cold_start_ms = (time.perf_counter() - begin) * 1e3
        return self.cold_start_ms

    def segment_one(self, target):
        clock = StageClock(self.model.synchronizer())
        return self.authors_way.segment(self.model, self.spec.inputs.shots, target, clock), clock.ms

    def finish(self) -> AuthorsResult:
        return AuthorsResult(
            summary=summarise(pass_times(self.passes)),
            memory=memory_report(self.high_water, self.device != "cpu", self.rss_baseline),
            cold_start_ms=self.cold_start_ms,
            masks=self.passes[-1].masks,
            device=self.device,
        )
