"""`insid3 bench calibrate`: what a 125-setting calibration sweep costs against
scoring one setting on the same episodes (the goal: at most 3x).

Side by side in one process, alternating which goes first pass by pass: `insid3 calibrate` with a
one-setting grid (the bundle's defaults) and with the default 5 x 5 x 5 grid around them, on the
same drawn examples (one concept's scenes as positives, scenes of another concept as negatives:
engine/jobs/scenes.py). Each run starts with an empty feature cache, so both sides pay the backbone
once per image. Timed: the episode loop (`timings.seconds` of the report: loading, backbone,
debias, clustering, aggregation, upsampling, scoring) and the whole call (plus loading the
backend, the results, bootstrap, reports, heatmap). Medians over `--passes`.

    insid3 bench calibrate --bundle /tmp/bs448 --examples 6 --negatives 2 --passes 3 --out results/calibrate
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.benchmarks.writer import ReportFiles, table, write_report
from insid3.engine.jobs.scenes import draw_scene
from insid3.errors import SettingsError
from insid3.evaluation.calibration.examples import ExampleSource
from insid3.evaluation.calibration.run import calibrate
from insid3.evaluation.calibration.settings import CalibrationSettings
from insid3.format.bundle import load_bundle

GOAL_RATIO = 3.0


def draw_examples(folder: Path, examples: int, negatives: int, size: tuple[int, int]) -> tuple[Path, Path]:
    positives, empty = folder / "concept", folder / "negatives"
    positives.mkdir(parents=True)
    empty.mkdir()
    for i in range(examples):
        scene = draw_scene(seed=10 + i, size=size, concept=0)
        Image.fromarray(scene.image).save(positives / f"scene{i}.png")
        Image.fromarray(scene.mask.astype(np.uint8) * 255).save(positives / f"scene{i}.mask.png")
    for i in range(negatives):
        Image.fromarray(draw_scene(seed=500 + i, size=size, concept=1).image).save(empty / f"empty{i}.png")
    return positives, empty


def timed(settings: CalibrationSettings) -> dict:
    started = time.perf_counter()
    result = calibrate(settings)
    wall = time.perf_counter() - started
    timings = result.report["timings"]
    return {"loop_s": timings["seconds"], "wall_s": wall, "settings": len(result.results),
            "stage_ms_per_episode": timings["stage_ms_per_episode"], "images_encoded": timings["images_encoded"],
            "miou_defaults": result.default.miou}


def measure(bundle: Path, examples: int, negatives: int, passes: int, size: tuple[int, int], backend: str) -> dict:
    defaults = load_bundle(bundle).metadata.defaults
    runs: dict[str, list[dict]] = {"one": [], "sweep": []}
    with tempfile.TemporaryDirectory(prefix="insid3-bench-calibrate-") as root:
        positives, empty = draw_examples(Path(root) / "data", examples, negatives, size)
        sweep = CalibrationSettings(bundle=bundle, source=ExampleSource("folder", positives), negatives=(empty,),
                                    out=Path(root) / "out", backend=backend, progress=False, overwrite=True)
        one = replace(sweep, svd_components=(defaults.svd_components,), tau=(defaults.tau,),
                      merge_threshold=(defaults.merge_threshold,))
        timed(one)  # warm-up: the backend's first call, page cache
        for index in range(passes):
            order = [("one", one), ("sweep", sweep)] if index % 2 == 0 else [("sweep", sweep), ("one", one)]
            for name, settings in order:
                runs[name].append(timed(replace(settings, out=Path(root) / f"out-{name}-{index}")))
                print(f"pass {index}: {name} {runs[name][-1]['loop_s']:.2f} s", file=sys.stderr)
    if runs["one"][0]["miou_defaults"] != runs["sweep"][0]["miou_defaults"]:
        raise AssertionError("the sweep's figure for the defaults differs from the one-setting run's")
    median = lambda name, key: float(statistics.median(r[key] for r in runs[name]))  # noqa: E731
    stages = {name: {stage: float(statistics.median(r["stage_ms_per_episode"].get(stage, 0.0) for r in runs[name]))
                     for stage in sorted(runs[name][0]["stage_ms_per_episode"])} for name in runs}
    meta = load_bundle(bundle).metadata
    return {
        "bundle": str(bundle), "arch": meta.arch, "resolution": meta.resolution, "weights": meta.weights.kind,
        "backend": backend, "episodes": examples + negatives, "negatives": negatives, "image_size": list(size), "passes": passes,
        "settings": {"one": runs["one"][0]["settings"], "sweep": runs["sweep"][0]["settings"]},
        "loop_s": {name: median(name, "loop_s") for name in runs},
        "wall_s": {name: median(name, "wall_s") for name in runs},
        "ratio_loop": median("sweep", "loop_s") / median("one", "loop_s"),
        "ratio_wall": median("sweep", "wall_s") / median("one", "wall_s"),
        "goal_ratio": GOAL_RATIO, "stage_ms_per_episode": stages, "runs": runs,
    }


def markdown(result: dict) -> str:
    positives = result["episodes"] - result["negatives"]
    command = (f"insid3 bench calibrate --bundle {result['bundle']} --examples {positives} --negatives "
               f"{result['negatives']} --passes {result['passes']} --size {result['image_size'][0]} "
               f"{result['image_size'][1]} --backend {result['backend']}")
    lines = [
        f"# Calibration sweep cost: {result['settings']['sweep']} settings vs 1", "",
        f"`{command}`", "",
        f"{result['arch']} at {result['resolution']} px ({result['weights']}), backend {result['backend']}, "
        f"{result['episodes']} episodes of {result['image_size'][1]}x{result['image_size'][0]} drawn scenes, "
        f"medians of {result['passes']} alternating passes.", "",
        *table(("", "1 setting", "sweep", "ratio", "goal"), (
            ("episode loop (s)", f"{result['loop_s']['one']:.2f}", f"{result['loop_s']['sweep']:.2f}",
             f"{result['ratio_loop']:.2f}x", f"<= {result['goal_ratio']:g}x"),
            ("whole call (s)", f"{result['wall_s']['one']:.2f}", f"{result['wall_s']['sweep']:.2f}",
             f"{result['ratio_wall']:.2f}x", ""))), "",
        "Per episode (ms, medians):", "",
    ]
    per_episode = result["stage_ms_per_episode"]
    stages = sorted(set(per_episode["one"]) | set(per_episode["sweep"]))
    lines += table(("stage", "1 setting", "sweep"), (
        (stage, f"{per_episode['one'].get(stage, 0.0):.1f}", f"{per_episode['sweep'].get(stage, 0.0):.1f}")
        for stage in stages))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CalibrateBenchSettings:
    bundle: Path
    examples: int = 6  # labelled scenes of the concept (positive episodes)
    negatives: int = 2  # scenes without it (negative episodes)
    passes: int = 3
    size: tuple[int, int] = (480, 640)
    backend: str = "auto"
    out: Path | None = None  # OUT.json and OUT.md


def run(settings: CalibrateBenchSettings) -> int:
    """The report on stdout (and OUT.json, OUT.md); 1 when the sweep costs more than GOAL_RATIO x."""
    if settings.examples < 2 or settings.negatives < 0 or settings.passes < 1:
        raise SettingsError("--examples must be >= 2, --negatives >= 0 and --passes >= 1")
    result = measure(Path(settings.bundle), settings.examples, settings.negatives, settings.passes,
                     tuple(settings.size), settings.backend)
    text = markdown(result)
    print(text)
    if settings.out is not None:
        settings.out.parent.mkdir(parents=True, exist_ok=True)
        write_report(result, ReportFiles(json=settings.out.with_suffix(".json"), markdown=settings.out.with_suffix(".md")),
                     markdown=markdown)
    return 0 if result["ratio_loop"] <= GOAL_RATIO else 1


if __name__ == "__main__":  # `insid3 bench calibrate` under its module's name
    from insid3.engine.cli.main import run_command

    sys.exit(run_command("python -m insid3.benchmarks.calibrate", "bench", ["calibrate", *sys.argv[1:]]))
