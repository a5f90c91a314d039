"""The measurement loop both sides share: warm-up, then timed passes over the targets."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import numpy as np

from insid3.engine.bench.stats import PassTimes

# segment_one(target) -> (mask, {stage: ms}) for one target
SegmentOne = Callable[[Any], tuple[np.ndarray, Mapping[str, float]]]


@dataclass(frozen=True)
class PassRun:
    times: PassTimes
    masks: tuple[np.ndarray, ...]  # the last pass's masks, in target order


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


def run_passes(
    segment_one: SegmentOne,
    targets: Sequence[Any],
    iters: int,
    warmup: int,
    synchronize: Callable[[], None],
) -> PassRun:
    warm_up(segment_one, targets, warmup)
    latencies, stages, masks = [], [], []
    for _ in range(iters):
        masks, one_pass = [], []
        for target in targets:
            mask, stage_ms, ms = timed(segment_one, target, synchronize)
            masks.append(mask)
            one_pass.append(ms)
            stages.append(stage_ms)
        latencies.append(tuple(one_pass))
    return PassRun(PassTimes(tuple(latencies), tuple(stages)), tuple(masks))
