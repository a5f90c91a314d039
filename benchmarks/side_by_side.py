"""Driving both sides: cold starts one at a time, then measured passes interleaved.

Order: ours cold start and warm-up; the authors' process is spawned only then (so its torch
import does not overlap our cold start); its cold start and warm-up; then `iters` rounds of one
pass each, alternating which side goes first (ABBA), so slow drifts in the machine's load fall
on both sides alike; then our extras (reference encoding, batch sizes, bf16 parity).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack

from insid3.benchmarks.authors_side import AuthorsResult, AuthorsSide, AuthorsSpec
from insid3.benchmarks.isolation import SideProcess
from insid3.benchmarks.ours import OursResult, OursSide, OursSpec


class Progress:
    """One line per step with the seconds since the run began: a run takes minutes."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report, self.started = report, time.perf_counter()

    def step(self, side: SideProcess, name: str, method: str, words: str) -> object:
        self.report(f"{time.perf_counter() - self.started:6.1f} s  {name}: {words} ...")
        return side.call(method)


def measure_side_by_side(
    ours_spec: OursSpec, authors_spec: AuthorsSpec | None, iters: int,
    report: Callable[[str], None] = lambda line: None,
) -> tuple[OursResult, AuthorsResult | None]:
    progress = Progress(report)
    with ExitStack() as stack:
        ours = stack.enter_context(SideProcess(OursSide, ours_spec))
        progress.step(ours, "ours", "start", "cold start (bundle, backend, reference)")
        progress.step(ours, "ours", "warm_up", "warm-up")
        sides = [("ours", ours)]
        if authors_spec is not None:
            authors = stack.enter_context(SideProcess(AuthorsSide, authors_spec))
            progress.step(authors, "authors' way", "start", "cold start (torch model)")
            progress.step(authors, "authors' way", "warm_up", "warm-up")
            sides.append(("authors' way", authors))
        for round_number in range(iters):
            for name, side in sides if round_number % 2 == 0 else sides[::-1]:
                progress.step(side, name, "measure_pass", f"timed pass {round_number + 1}/{iters}")
        ours_result = progress.step(ours, "ours", "finish", "extras (reference encoding, batch sizes)")
        authors_result = authors.call("finish") if authors_spec is not None else None
    return ours_result, authors_result
