"""Driving both sides: cold starts one at a time, then measured passes interleaved.

Order: ours cold start and warm-up; the authors' process is spawned only then (so its torch
import does not overlap our cold start); its cold start and warm-up; then `iters` rounds of one
pass each, alternating which side goes first (ABBA), so slow drifts in the machine's load fall
on both sides alike; then our extras (reference encoding, batch sizes, bf16 parity).
"""

from __future__ import annotations

from contextlib import ExitStack

from insid3.engine.bench.isolation import SideProcess
from insid3.engine.bench.ours import OursResult, OursSide, OursSpec
from insid3.engine.bench.reference_side import ReferenceResult, ReferenceSide, ReferenceSpec


def measure_side_by_side(
    ours_spec: OursSpec, reference_spec: ReferenceSpec | None, iters: int
) -> tuple[OursResult, ReferenceResult | None]:
    with ExitStack() as stack:
        ours = stack.enter_context(SideProcess(OursSide, ours_spec))
        ours.call("start")
        ours.call("warm_up")
        sides = [ours]
        if reference_spec is not None:
            reference = stack.enter_context(SideProcess(ReferenceSide, reference_spec))
            reference.call("start")
            reference.call("warm_up")
            sides.append(reference)
        for round_number in range(iters):
            for side in sides if round_number % 2 == 0 else sides[::-1]:
                side.call("measure_pass")
        ours_result = ours.call("finish")
        reference_result = sides[1].call("finish") if reference_spec is not None else None
    return ours_result, reference_result
