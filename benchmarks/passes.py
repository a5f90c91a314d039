"""The measurement loop both sides share: untimed warm-up calls, then timed passes over the targets."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import numpy as np

from insid3.benchmarks.harness import Pass
from insid3.benchmarks.stats import PassTimes

# segment_one(target) -> (mask, {stage: ms}) for one target
SegmentOne = Callable[[Any], tuple[np.ndarray, Mapping[str, float]]]


@dataclass(frozen=True)
class PassRecord:
    """One timed pass: every target once, in order."""

    latencies_ms: tuple[float, ...]
    stages_ms: tuple[dict[str, float], ...]
    masks: tuple[np.ndarray, ...]


def warm_up(segment_one: SegmentOne, targets: Sequence[Any], count: int) -> None:
    """`count` untimed calls cycling over the targets: lazy initialisation, caches, allocators."""
    for target in islice(cycle(targets), count):
        segment_one(target)


def timed(segment_one: SegmentOne, target: Any, synchronize: Callable[[], None]) -> tuple[np.ndarray, dict, float]:
    """One call, synchronised on both ends so queued device work is inside the measurement."""
    synchronize()
    start = time.perf_counter()
    mask, stages = segment_one(target)
    synchronize()
    return mask, dict(stages), (time.perf_counter() - start) * 1e3


def measure_pass(segment_one: SegmentOne, targets: Sequence[Any], synchronize: Callable[[], None]) -> PassRecord:
    results = [timed(segment_one, target, synchronize) for target in targets]
    return PassRecord(
        latencies_ms=tuple(ms for _, _, ms in results),
        stages_ms=tuple(stages for _, stages, _ in results),
        masks=tuple(mask for mask, _, _ in results),
    )


def pass_times(records: Sequence[PassRecord]) -> PassTimes:
    return PassTimes(
        latencies_ms=tuple(record.latencies_ms for record in records),
        stages_ms=tuple(stages for record in records for stages in record.stages_ms),
    )


class MeasuredSide:
    """What every side that segments targets one at a time shares (a harness.Side: insid3 bench's
    two sides, the GPU acceptance's two): `warmup` untimed calls, then timed passes over `targets`.

    A side defines `segment_one` and sets `synchronize` (at `start`); `passes` holds the records.
    """

    synchronize: Callable[[], None]

    def __init__(self, targets: Sequence[Any], warmup: int) -> None:
        self.targets, self.warmup, self.passes = tuple(targets), warmup, []

    def segment_one(self, target: Any) -> tuple[np.ndarray, Mapping[str, float]]:
        raise NotImplementedError

    def warm_up(self) -> None:
        warm_up(self.segment_one, self.targets, self.warmup)

    def measure_pass(self) -> Pass:
        """One timed pass (harness.py drives it); the side keeps its per-target record."""
        record = measure_pass(self.segment_one, self.targets, self.synchronize)
        self.passes.append(record)
        return Pass(seconds=sum(record.latencies_ms) / 1e3, units=len(record.latencies_ms), outputs=record.masks)
