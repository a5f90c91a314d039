"""The one side-by-side harness: ours beside the authors' way, the same inputs, medians compared.

A *side* (`Side`) is a small object: `start` prepares its model and inputs (the cold start),
`warm_up` runs untimed calls, `measure_pass` runs one timed pass and returns a `Pass` (its seconds
and the outputs to compare: masks, counts), `finish` hands over whatever else the side measured.
The harness drives the sides through a `Handle`: `InProcess` for a side in this process, or
isolation.SideProcess for one in its own spawned process (the bench does that so one side's
memory and thread pools are not charged to the other).

Two schedules:
- interleaved (`interleave=True`): every side starts and warms up in turn (a side's handle is
  opened only then, so the next side's imports do not overlap its cold start), then rounds of one
  pass each, alternating which side goes first (ABBA): a machine whose load drifts slows both
  sides alike;
- blocked: each side start, warm-up, passes, finish, one after the other, where a device-wide
  high-water mark must belong to one side (the GPU acceptance resets it between sides).

Then `median_fps`, `pass_ratio_median` and `differing` (masks or counts that disagree) read the
figures the report writer (benchmarks/writer.py) lays out.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Pass:
    """One timed pass of a side: its wall seconds, the units it did and what it produced."""

    seconds: float
    units: int  # targets or episodes in the pass
    outputs: tuple = ()  # masks or counts, one per unit, in order: compared across sides
    stages_ms: dict[str, float] = field(default_factory=dict)  # per-stage totals of the pass


class Side(Protocol):
    def start(self) -> object: ...

    def warm_up(self) -> None: ...

    def measure_pass(self) -> Pass: ...

    def finish(self) -> object: ...


class Handle(Protocol):
    """How the harness reaches a side: `call("measure_pass")` runs that method of the side."""

    def call(self, method: str, *args: Any) -> Any: ...


class InProcess:
    """A side living in this process, behind the same `call` as a side in its own process."""

    def __init__(self, side: Side) -> None:
        self.side = side

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.side, method)(*args)


@dataclass(frozen=True)
class Entrant:
    """A side as the harness sees it: its name in reports and how to open its handle."""

    name: str
    open: Callable[[], AbstractContextManager[Handle] | Handle]


@dataclass
class SideRun:
    """What the harness collected from one side."""

    name: str
    cold_start: object = None
    passes: list[Pass] = field(default_factory=list)
    result: object = None

    def fps(self) -> list[float]:
        return [one.units / one.seconds for one in self.passes]

    def median_fps(self) -> float:
        return float(statistics.median(self.fps()))

    def outputs(self) -> tuple:
        """The outputs of the last pass."""
        return self.passes[-1].outputs


def in_process(name: str, build: Callable[[], Side]) -> Entrant:
    return Entrant(name, lambda: InProcess(build()))


class _Progress:
    """One line per step with the seconds since the run began: a run takes minutes."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report, self.started = report, time.perf_counter()

    def step(self, handle: Handle, name: str, method: str, words: str) -> Any:
        self.report(f"{time.perf_counter() - self.started:6.1f} s  {name}: {words} ...")
        return handle.call(method)


def run_side_by_side(
    entrants: Sequence[Entrant], passes: int, *, interleave: bool = True,
    report: Callable[[str], None] = lambda line: None,
    words: dict[str, dict[str, str]] | None = None,
) -> dict[str, SideRun]:
    """Every side started, warmed up, measured `passes` times and finished, on the schedule above.

    `words[name][method]` names a step in the progress lines (default: the method's name).
    """
    progress, words = _Progress(report), words or {}
    runs = {entrant.name: SideRun(entrant.name) for entrant in entrants}
    with ExitStack() as stack:
        handles: dict[str, Handle] = {}

        def step(name: str, method: str, default: str) -> Any:
            return progress.step(handles[name], name, method, words.get(name, {}).get(method, default))

        def measured(name: str, number: int) -> None:
            runs[name].passes.append(step(name, "measure_pass", f"timed pass {number}/{passes}"))

        for entrant in entrants:
            opened = entrant.open()
            handles[entrant.name] = stack.enter_context(
                opened if isinstance(opened, AbstractContextManager) else nullcontext(opened))
            runs[entrant.name].cold_start = step(entrant.name, "start", "cold start")
            step(entrant.name, "warm_up", "warm-up")
            if not interleave:
                for number in range(passes):
                    measured(entrant.name, number + 1)
                runs[entrant.name].result = step(entrant.name, "finish", "finish")
        if interleave:
            names = [entrant.name for entrant in entrants]
            for number in range(passes):
                for name in names if number % 2 == 0 else names[::-1]:
                    measured(name, number + 1)
            for name in names:
                runs[name].result = step(name, "finish", "finish")
    return runs


def pass_ratio_median(ours: SideRun, theirs: SideRun) -> float:
    """Median over rounds of ours / theirs pass rates: each round's two passes run back to back,
    so the ratio resists a machine whose load drifts better than the ratio of the medians."""
    return float(statistics.median(o / t for o, t in zip(ours.fps(), theirs.fps())))


def same_output(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


def differing(outputs: Sequence, others: Sequence) -> int:
    """How many of two sides' outputs (masks, counts) differ; a length mismatch counts as all."""
    if len(outputs) != len(others):
        return max(len(outputs), len(others))
    return sum(not same_output(a, b) for a, b in zip(outputs, others))
