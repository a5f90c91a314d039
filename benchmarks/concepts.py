"""`insid3 bench concepts`: many concepts on one target in one pass, against one.

Side by side in one process, interleaved pass by pass on the same target (a drawn scene):
`segment(target, one reference)` and `segment_concepts(target, N references)`, and, unless
`--no-baseline`, N separate `segment` calls (what N concepts cost without the shared pass). Each
is timed end to end (preprocess to the last mask on the host); medians over `--repeats` passes
after one warm-up. The report gives the ratio N concepts / 1 concept, the per-stage medians of
both, and what each concept costs on top of the shared target side (its matching, pruned
aggregation and upsampling, from `ConceptMask.timings_ms`). Before timing, every concept's mask
is checked to equal `segment` alone.

    insid3 bench concepts --bundle /tmp/bs768 --concepts 10 --repeats 5
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insid3.benchmarks.writer import ReportFiles, table, write_report
from insid3.engine.jobs.scenes import CONCEPTS, draw_scene
from insid3.engine.runtime.concepts import PER_CONCEPT_STAGES
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import STAGES
from insid3.errors import SettingsError

GOAL_RATIO = 1.3  # the goal: N = 10 concepts at most 1.3 x one concept


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return (time.perf_counter() - started) * 1e3, value


def measure(segmenter: Segmenter, concepts: int, repeats: int, baseline: bool, size: tuple[int, int]) -> dict:
    """Every measurement of the report (module docstring), as plain numbers."""
    shots = [draw_scene(seed=100 + i, size=size, concept=i % len(CONCEPTS)) for i in range(concepts)]
    references = {f"concept{i}": segmenter.encode_reference([(s.image, s.mask)]) for i, s in enumerate(shots)}
    first = next(iter(references.values()))
    target = draw_scene(seed=7, size=size, concept=0).image
    result = segmenter.segment_concepts(target, references)  # warm-up, and the masks checked
    for concept in result:
        if not np.array_equal(concept.mask, segmenter.segment(target, references[concept.name])):
            raise AssertionError(f"{concept.name}: segment_concepts' mask differs from segment()'s")
    runs: dict[str, list] = {"one": [], "many": [], "separate": [], "one_stages": [], "many_stages": [],
                             "per_concept": []}
    for _ in range(repeats):
        ms, _ = _timed(lambda: segmenter.segment(target, first))
        runs["one"].append(ms)
        runs["one_stages"].append(dict(segmenter.last_timings))
        ms, result = _timed(lambda: segmenter.segment_concepts(target, references))
        runs["many"].append(ms)
        runs["many_stages"].append(dict(segmenter.last_timings))
        runs["per_concept"] += [sum(c.timings_ms.values()) for c in result]
        if baseline:
            ms, _ = _timed(lambda: [segmenter.segment(target, reference) for reference in references.values()])
            runs["separate"].append(ms)
    stage_medians = {
        side: {stage: _median([t.get(stage, 0.0) for t in runs[f"{side}_stages"]]) for stage in STAGES}
        for side in ("one", "many")
    }
    own = {stage: _median([c.timings_ms[stage] for c in result]) for stage in PER_CONCEPT_STAGES}
    return {
        "engine": segmenter.describe(),
        "concepts": concepts,
        "repeats": repeats,
        "target_size": list(size),
        "one_ms": _median(runs["one"]),
        "many_ms": _median(runs["many"]),
        "separate_ms": _median(runs["separate"]) if baseline else None,
        "ratio": _median(runs["many"]) / _median(runs["one"]),
        "stages_ms": stage_medians,
        "per_concept_ms": _median(runs["per_concept"]),
        "per_concept_stages_ms": own,
        "foreground_concepts": int(sum(c.mask.any() for c in result)),
    }


def report(numbers: dict) -> str:
    n = numbers["concepts"]
    lines = [
        f"# {n} concepts on one target in one pass ({numbers['engine']})",
        "",
        f"Target {numbers['target_size'][1]}x{numbers['target_size'][0]} (a drawn scene); medians of "
        f"{numbers['repeats']} interleaved passes; {numbers['foreground_concepts']} of {n} masks non-empty.",
        "",
    ]
    runs = [("segment(target, 1 reference)", f"{numbers['one_ms']:.1f}", "1.00x"),
            (f"segment_concepts(target, {n} references)", f"{numbers['many_ms']:.1f}", f"{numbers['ratio']:.2f}x")]
    if numbers["separate_ms"] is not None:
        runs.append((f"{n} x segment(target, reference)", f"{numbers['separate_ms']:.1f}",
                     f"{numbers['separate_ms'] / numbers['one_ms']:.2f}x"))
    lines += table(("run", "ms", "vs one concept"), runs, "lrr")
    verdict = "meets" if numbers["ratio"] <= GOAL_RATIO else "misses"
    lines += ["", f"Ratio {numbers['ratio']:.2f}x: {verdict} the goal of <= {GOAL_RATIO}x.", "",
              *table(("stage (ms)", "1 concept", f"{n} concepts"), (
                  (stage, f"{numbers['stages_ms']['one'][stage]:.1f}", f"{numbers['stages_ms']['many'][stage]:.1f}")
                  for stage in STAGES), "lrr")]
    own = numbers["per_concept_stages_ms"]
    lines += ["", f"Per concept on top of the shared target side: {numbers['per_concept_ms']:.2f} ms "
              f"(matching {own['matching']:.2f}, aggregation {own['aggregation']:.2f}, "
              f"upsample {own['upsample']:.2f}; medians over concepts of the last pass)."]
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class ConceptsBenchSettings:
    bundle: str
    backend: str = "auto"
    concepts: int = 10
    repeats: int = 5
    size: tuple[int, int] = (480, 640)
    baseline: bool = True
    json: Path | None = None


def run(settings: ConceptsBenchSettings) -> int:
    if settings.repeats < 5 or settings.concepts < 1:
        raise SettingsError("--repeats must be >= 5 and --concepts >= 1")
    segmenter = Segmenter.from_bundle(settings.bundle, backend=settings.backend)
    numbers = measure(segmenter, settings.concepts, settings.repeats, settings.baseline, tuple(settings.size))
    print(report(numbers))
    if settings.json:
        write_report(numbers, ReportFiles(json=settings.json))
    return 0
