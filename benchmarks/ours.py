"""Our side: the Segmenter with cached references, living in its own process (isolation.py)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from itertools import cycle, islice

import numpy as np

from insid3.benchmarks.inputs import BenchInputs
from insid3.benchmarks.memory import MemoryReport, cupy_high_water, current_rss_mb, memory_report, sampling
from insid3.benchmarks.passes import MeasuredSide, pass_times
from insid3.benchmarks.stats import mean_iou, summarise
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import STAGES
from insid3.format.refinement import RefineSettings

REFERENCE_ENCODE_REPEATS = 3


@dataclass(frozen=True)
class OursSpec:
    bundle: str
    backend: str
    precision: str
    num_threads: int | None
    batch_sizes: tuple[int, ...]
    iters: int  # passes per batch size in the throughput runs
    warmup: int
    inputs: BenchInputs
    refine: RefineSettings = RefineSettings()


@dataclass(frozen=True)
class OursResult:
    summary: dict  # stats.summarise: fps, fps_per_pass, latency_ms, stages_ms
    memory: MemoryReport
    reference_encode_ms: float
    cold_start_ms: float
    by_batch_size: dict[str, dict]
    masks: tuple[np.ndarray, ...]
    backend: dict  # name, device, precision as loaded
    mask_mean_iou_vs_fp32: float | None  # reduced precision only: its masks against fp32's


def load(spec: OursSpec, precision: str) -> Segmenter:
    return Segmenter.from_bundle(spec.bundle, spec.backend, precision=precision, num_threads=spec.num_threads,
                                 refine=spec.refine)


class OursSide(MeasuredSide):
    """start -> warm_up -> measure_pass (x iters, interleaved with the other side) -> finish."""

    def __init__(self, spec: OursSpec) -> None:
        super().__init__(spec.inputs.targets, spec.warmup)
        self.spec = spec
        self.high_water = cupy_high_water()  # None on the CPU
        self.rss_baseline = current_rss_mb()
        self.cold_start_ms = 0.0

    def start(self) -> float:
        """Cold start: bundle load (backend compile included) -> references encoded -> first mask."""
        begin = time.perf_counter()
        self.segmenter = load(self.spec, self.spec.precision)
        self.reference = self.segmenter.encode_reference(self.spec.inputs.shots)
        self.segmenter.segment(self.spec.inputs.targets[0], reference=self.reference)
        self.segmenter.backend.synchronize()
        self.cold_start_ms = (time.perf_counter() - begin) * 1e3
        self.synchronize = sampling(self.segmenter.backend.synchronize, self.high_water)
        return self.cold_start_ms

    def segment_one(self, target):
        mask = self.segmenter.segment(target, reference=self.reference)
        return mask, self.segmenter.last_timings

    def _memory(self) -> MemoryReport:
        return memory_report(self.high_water, self.segmenter.backend.device != "cpu", self.rss_baseline)

    def reference_encode_ms(self) -> float:
        """The one-off cost of (re-)encoding the references in a warm process: median of a few."""
        times = []
        for _ in range(REFERENCE_ENCODE_REPEATS):
            self.synchronize()
            begin = time.perf_counter()
            self.segmenter.encode_reference(self.spec.inputs.shots)
            self.synchronize()
            times.append((time.perf_counter() - begin) * 1e3)
        return float(statistics.median(times))

    def batch_throughput(self, batch_size: int) -> dict:
        """Targets/s through segment_batch (batched backbone, decoding overlapping inference).

        A pass holds at least two batches, cycling the targets, so the overlap exists.
        """
        count = max(len(self.spec.inputs.targets), 2 * batch_size)
        targets = list(islice(cycle(self.spec.inputs.targets), count))
        if self.spec.warmup:
            self.segmenter.segment_batch(targets, batch_size, reference=self.reference)
        fps = []
        for _ in range(self.spec.iters):
            self.synchronize()
            begin = time.perf_counter()
            self.segmenter.segment_batch(targets, batch_size, reference=self.reference)
            self.synchronize()
            fps.append(count / (time.perf_counter() - begin))
        return {
            "fps": float(statistics.median(fps)),
            "fps_per_pass": fps,
            "targets_per_pass": count,
            "stages_ms": {stage: self.segmenter.last_timings.get(stage, 0.0) for stage in STAGES},
            # the high-water mark up to this batch size's run (sizes run in increasing order)
            "peak_memory_mb": self._memory().peak_mb,
        }

    def fp32_parity(self, masks: tuple[np.ndarray, ...]) -> float | None:
        """Mean IoU of the reduced-precision masks against the same backend's fp32 masks."""
        if self.spec.precision == "fp32":
            return None
        segmenter = load(self.spec, "fp32")
        reference = segmenter.encode_reference(self.spec.inputs.shots)
        return mean_iou(masks, [segmenter.segment(t, reference=reference) for t in self.spec.inputs.targets])

    def finish(self) -> OursResult:
        # The headline peak is read first: one target at a time, like the authors' way. Batches
        # raise it; the fp32 parity model loads only after every figure is read.
        memory = self._memory()
        encode_ms = self.reference_encode_ms()
        by_batch = {str(size): self.batch_throughput(size) for size in sorted(self.spec.batch_sizes)}
        masks = self.passes[-1].masks
        backend = self.segmenter.backend
        return OursResult(
            summary=summarise(pass_times(self.passes)),
            memory=memory,
            reference_encode_ms=encode_ms,
            cold_start_ms=self.cold_start_ms,
            by_batch_size=by_batch,
            masks=masks,
            backend={"name": backend.name, "device": backend.device, "precision": backend.precision,
                     "describe": self.segmenter.describe()},
            mask_mean_iou_vs_fp32=self.fp32_parity(masks),
        )
