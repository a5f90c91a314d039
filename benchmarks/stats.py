"""Latency and throughput summaries: what one side of the benchmark measured.

Convention (the JSON contract relies on it):
- a *pass* runs every target once; `iters` passes are measured after the warm-up;
- latency is per target (one `segment` call, synchronised on both ends), percentiles over all
  measured targets of all passes (numpy's linear interpolation);
- fps is the median over passes of targets / pass seconds, so it sits between
  1000 / max latency and 1000 / min latency, and the goal's "median of >= 5" reads off it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from insid3.engine.runtime.timing import STAGES

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class PassTimes:
    """Every measured target's latency (ms), grouped by pass, and per-target stage times (ms)."""

    latencies_ms: tuple[tuple[float, ...], ...]  # [pass][target]
    stages_ms: tuple[Mapping[str, float], ...]  # one per measured target

    def __post_init__(self) -> None:
        if not self.latencies_ms or not all(self.latencies_ms):
            raise ValueError("PassTimes needs at least one pass of at least one target")


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(latencies_ms, dtype=np.float64)
    summary = {f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES}
    summary["mean"] = float(values.mean())
    return summary


def pass_fps(latencies_ms: Sequence[Sequence[float]]) -> list[float]:
    return [1000.0 * len(one_pass) / sum(one_pass) for one_pass in latencies_ms]


def median_fps(latencies_ms: Sequence[Sequence[float]]) -> float:
    return float(statistics.median(pass_fps(latencies_ms)))


def mean_stages(per_target: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean ms per target for every stage (a stage a side never ran counts 0)."""
    return {stage: float(np.mean([t.get(stage, 0.0) for t in per_target])) for stage in STAGES}


def summarise(times: PassTimes) -> dict:
    flat = [ms for one_pass in times.latencies_ms for ms in one_pass]
    return {
        "fps": median_fps(times.latencies_ms),
        "fps_per_pass": pass_fps(times.latencies_ms),
        "latency_ms": latency_summary(flat),
        "stages_ms": mean_stages(times.stages_ms),
    }


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one size; two empty masks agree fully (1.0)."""
    if a.shape != b.shape:
        raise ValueError(f"masks of different sizes: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mean_iou(masks: Sequence[np.ndarray], others: Sequence[np.ndarray]) -> float:
    if len(masks) != len(others) or not masks:
        raise ValueError(f"cannot compare {len(masks)} masks with {len(others)}")
    return float(np.mean([mask_iou(a, b) for a, b in zip(masks, others)]))
