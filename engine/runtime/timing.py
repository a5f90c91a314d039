"""Per-stage wall-clock timing that charges device work to the stage that issued it.

GPU work is asynchronous: without a synchronisation at every stage boundary, a kernel launched
in `matching` would be paid for by whichever later stage first waits on it. `StageClock` calls
the backend's `synchronize` before reading the clock at each boundary (a no-op on the CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# "refine" is the dense-CRF refinement (engine/runtime/refinement.py); 0 ms with the default bilinear one.
STAGES = ("preprocess", "backbone", "debias", "matching", "clustering", "aggregation", "upsample", "refine")


def no_sync() -> None:
    """The CPU's synchronisation: everything already happened."""


def device_synchronizer(xp) -> Callable[[], None]:
    """A function that waits for all queued work of array module `xp` (cupy) or does nothing."""
    cuda = getattr(xp, "cuda", None)
    if cuda is None:
        return no_sync
    return cuda.get_current_stream().synchronize


class StageClock:
    """Accumulates milliseconds per stage; `with clock.stage("debias"): ...`."""

    def __init__(self, synchronize: Callable[[], None] = no_sync) -> None:
        self._synchronize = synchronize
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3

    def fresh(self) -> "StageClock":
        """A new clock at zero that synchronises as this one (a part's own times, added back)."""
        return StageClock(self._synchronize)

    def add(self, name: str, milliseconds: float) -> None:
        self.ms[name] = self.ms.get(name, 0.0) + milliseconds
