"""Driving both sides: cold starts one at a time, then measured passes interleaved.

Order: ours cold start and warm-up; the authors' process is spawned only then (so its torch
import does not overlap our cold start); its cold start and warm-up; then `iters` rounds of one
pass each, alternating which side goes first (ABBA), so slow drifts in the machine's load fall
on both sides alike; then our extras (reference encoding, batch sizes, bf16 parity).
"""

from __future__ import annotations

from contextlib import ExitStack

from insid3.benchmarks.authors_side import AuthorsResult, AuthorsSide, AuthorsSpec
from insid3.benchmarks.isolation import SideProcess
from insid3.benchmarks.ours import OursResult, OursSide, OursSpec


def measure_side_by_side(
    ours_spec: OursSpec, authors_spec: AuthorsSpec | None, iters: int
) -> tuple[OursResult, AuthorsResult | None]:
    with ExitStack() as stack:
        ours = stack.enter_context(SideProcess(OursSide, ours_spec))
        ours.call("start")
        ours.call("warm_up")
        sides = [ours]
        if authors_spec is not None:
            authors = stack.enter_context(SideProcess(AuthorsSide, authors_spec))
            authors.call("start")
            authors.call("warm_up")
            sides.append(authors)
        for round_number in range(iters):
            for side in sides if round_number % 2 == 0 else sides[::-1]:
                side.call("measure_pass")
        ours_result = ours.call("finish")
        authors_result = sides[1].call("finish") if authors_spec is not None else None
    return ours_result, authors_result
