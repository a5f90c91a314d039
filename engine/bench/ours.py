"""Our side: the Segmenter with cached references, measured in its own process (isolation.py)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from itertools import cycle, islice

import numpy as np

from insid3.engine.bench.inputs import BenchInputs
from insid3.engine.bench.memory import MemoryReport, cupy_high_water, current_rss_mb, memory_report, sampling
from insid3.engine.bench.passes import run_passes
from insid3.engine.bench.stats import mean_iou, summarise
from insid3.engine.reference import Reference
from insid3.engine.segmenter import Segmenter
from insid3.engine.timing import STAGES

REFERENCE_ENCODE_REPEATS = 3


@dataclass(frozen=True)
class OursSpec:
    bundle: str
    backend: str
    precision: str
    num_threads: int | None
    batch_sizes: tuple[int, ...]
    iters: int
    warmup: int
    inputs: BenchInputs


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
    return Segmenter.from_bundle(spec.bundle, spec.backend, precision=precision, num_threads=spec.num_threads)


def cold_start(spec: OursSpec) -> tuple[Segmenter, Reference, float]:
    """Bundle load (backend compile included) -> references encoded -> first target's mask."""
    start = time.perf_counter()
    segmenter = load(spec, spec.precision)
    reference = segmenter.encode_reference(spec.inputs.shots)
    segmenter.segment(spec.inputs.targets[0], reference=reference)
    segmenter.backend.synchronize()
    return segmenter, reference, (time.perf_counter() - start) * 1e3


def reference_encode_ms(segmenter: Segmenter, inputs: BenchInputs, synchronize) -> float:
    """The one-off cost of (re-)encoding the references in a warm process: median of a few."""
    times = []
    for _ in range(REFERENCE_ENCODE_REPEATS):
        synchronize()
        start = time.perf_counter()
        segmenter.encode_reference(inputs.shots)
        synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times))


def batch_throughput(
    segmenter: Segmenter, reference: Reference, spec: OursSpec, batch_size: int, synchronize
) -> dict:
    """Targets/s through segment_batch (batched backbone, decoding overlapping inference).

    A pass holds at least two batches, cycling the targets, so the overlap exists.
    """
    count = max(len(spec.inputs.targets), 2 * batch_size)
    targets = list(islice(cycle(spec.inputs.targets), count))
    if spec.warmup:
        segmenter.segment_batch(targets, batch_size, reference=reference)
    fps = []
    for _ in range(spec.iters):
        synchronize()
        start = time.perf_counter()
        segmenter.segment_batch(targets, batch_size, reference=reference)
        synchronize()
        fps.append(count / (time.perf_counter() - start))
    return {
        "fps": float(statistics.median(fps)),
        "fps_per_pass": fps,
        "targets_per_pass": count,
        "stages_ms": {stage: segmenter.last_timings.get(stage, 0.0) for stage in STAGES},
    }


def fp32_parity(spec: OursSpec, masks: tuple[np.ndarray, ...]) -> float | None:
    """Mean IoU of the reduced-precision masks against the same backend's fp32 masks."""
    if spec.precision == "fp32":
        return None
    segmenter = load(spec, "fp32")
    reference = segmenter.encode_reference(spec.inputs.shots)
    return mean_iou(masks, [segmenter.segment(t, reference=reference) for t in spec.inputs.targets])


def measure_ours(spec: OursSpec) -> OursResult:
    high_water = cupy_high_water()
    rss_baseline = current_rss_mb()
    segmenter, reference, cold_ms = cold_start(spec)
    synchronize = sampling(segmenter.backend.synchronize, high_water)

    def segment_one(target):
        mask = segmenter.segment(target, reference=reference)
        return mask, segmenter.last_timings

    on_device = segmenter.backend.device != "cpu"
    run = run_passes(segment_one, spec.inputs.targets, spec.iters, spec.warmup, synchronize)
    # The headline peak is read here: one target at a time, like the authors' way. Larger
    # batches raise it; each batch size reports the high-water mark reached up to its own run.
    memory = memory_report(high_water, on_device, rss_baseline)
    encode_ms = reference_encode_ms(segmenter, spec.inputs, synchronize)
    by_batch = {}
    for size in sorted(spec.batch_sizes):
        by_batch[str(size)] = batch_throughput(segmenter, reference, spec, size, synchronize)
        by_batch[str(size)]["peak_memory_mb"] = memory_report(high_water, on_device, rss_baseline).peak_mb
    backend = {
        "name": segmenter.backend.name,
        "device": segmenter.backend.device,
        "precision": segmenter.backend.precision,
        "describe": segmenter.describe(),
    }
    return OursResult(
        summary=summarise(run.times),
        memory=memory,
        reference_encode_ms=encode_ms,
        cold_start_ms=cold_ms,
        by_batch_size=by_batch,
        masks=run.masks,
        backend=backend,
        mask_mean_iou_vs_fp32=fp32_parity(spec, run.masks),
    )
