"""`insid3 bench crf`: what the dense-CRF refinement (refine="crf") costs.

Two measurements, both in this process, medians over `--repeats` after one untimed call:

1. The refine stage alone at each `--sizes` S: kernels.crf.crf_refine on an S x S target and the
   mask INSID3 would refine (the target's true mask through a 1/16 bilinear round trip, as §9
   produces it from a patch mask), in both lattice arithmetics, and, with `--authors-crf DIR`
   (a local CPU build of the authors' library: benchmarks/crf_authors.py), INSID3's own
   crf_refine on the same inputs, interleaved call by call, with the masks compared.
2. With `--bundle B` (repeatable; one per resolution), the whole pipeline per stage,
   refine="bilinear" and refine="crf" interleaved on drawn scene pairs.

The target is a drawn scene (engine/jobs/scenes.py) unless `--image` and `--mask` name a photo.

    insid3 bench crf --sizes 768 1024 --authors-crf /tmp/authors-crf \\
        --bundle bundles/s768 --bundle bundles/s1024 --json crf.json --markdown crf.md
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.benchmarks.writer import ReportFiles, table, write_report
from insid3.engine.jobs.scenes import draw_scene, scene_pairs
from insid3.engine.runtime.images import load_mask, load_rgb, normalise_pixels
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import STAGES
from insid3.errors import Insid3Error
from insid3.format.bundle import IMAGENET_MEAN, IMAGENET_STD
from insid3.kernels.crf import CrfParameters, band_regions, crf_refine, guide_image
from insid3.kernels.resize import resize_nearest, threshold_bilinear

PROG = "insid3 bench crf"


def refine_inputs(size: int, image: Path | None, mask: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(normalised (3, S, S) pixels, the S x S mask to refine, a description of the target)."""
    if image is not None:
        rgb, truth, what = load_rgb(image), load_mask(mask), f"{image.name} ({mask.name})"
    else:
        scene = draw_scene(seed=3, size=(480, 640), concept=0)
        rgb, truth, what = Image.fromarray(scene.image), scene.mask, "a drawn 640 x 480 scene"
    pixels = normalise_pixels(rgb, size, IMAGENET_MEAN, IMAGENET_STD)
    square = resize_nearest(truth, (size, size))
    patches = threshold_bilinear(square, (size // 16, size // 16))
    return pixels, threshold_bilinear(patches, (size, size)), what


def _timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return (time.perf_counter() - started) * 1e3, value


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def measure_refine(size: int, pixels: np.ndarray, first: np.ndarray, repeats: int, authors) -> dict:
    """ms per call of each side at one size, and what each mask changed."""
    guide = guide_image(pixels, IMAGENET_MEAN, IMAGENET_STD)
    sides = {precision: (lambda p=precision: crf_refine(first, guide, CrfParameters.at_size(size, precision=p)))
             for precision in ("float32", "float64")}
    if authors is not None:
        import torch

        init_crf, refine = authors
        module = init_crf(size)
        tensor, initial = torch.from_numpy(pixels)[None], torch.from_numpy(first)
        sides["authors (CPU build)"] = lambda: refine(*module, tensor, initial).numpy()
    masks = {name: call() for name, call in sides.items()}  # untimed: Numba's cache, the library's start
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, call in sides.items():
            ms, masks[name] = _timed(call)
            times[name].append(ms)
    band = band_regions(first, CrfParameters.at_size(size).radius)[0]
    report = {"size": size, "band_pixels": int(band.sum()), "sides": {}}
    for name in sides:
        entry = {"ms": float(statistics.median(times[name])), "ms_per_call": times[name],
                 "changed_pixels": int((masks[name] ^ first).sum())}
        if authors is not None and name != "authors (CPU build)":
            theirs = masks["authors (CPU build)"]
            entry.update(differing_pixels=int((masks[name] ^ theirs).sum()), iou_vs_authors=_iou(masks[name], theirs))
        report["sides"][name] = entry
    return report


def measure_pipeline(bundle: Path, repeats: int) -> dict:
    """Median ms per stage of refine="bilinear" and "crf", interleaved on drawn scene pairs."""
    pairs = scene_pairs(2, size=(480, 640), seed=21)
    sides = {refine: Segmenter.from_bundle(bundle, refine=refine) for refine in ("bilinear", "crf")}
    references = {refine: s.encode_reference([(pairs[0][0].image, pairs[0][0].mask)]) for refine, s in sides.items()}
    stages: dict[str, list[dict]] = {refine: [] for refine in sides}
    for refine, segmenter in sides.items():  # untimed warm-up
        segmenter.segment(pairs[0][1].image, references[refine])
    for _ in range(repeats):
        for _, target in pairs:
            for refine, segmenter in sides.items():
                ms, _ = _timed(lambda s=segmenter, r=refine: s.segment(target.image, references[r]))
                stages[refine].append({**segmenter.last_timings, "total": ms})
    keys = (*STAGES, "total")
    meta = sides["crf"].bundle.metadata
    return {"bundle": str(bundle), "arch": meta.arch, "resolution": meta.resolution,
            "backend": sides["crf"].backend.name,
            "stages_ms": {refine: {k: float(statistics.median(t[k] for t in runs)) for k in keys}
                          for refine, runs in stages.items()}}


def markdown(report: dict) -> str:
    lines = [f"<!-- {report['command']} -->", "# The dense-CRF refinement's cost (refine=\"crf\")", "",
             f"Target: {report['target']}; medians of {report['repeats']} interleaved calls; {report['machine']}.", "",
             "## The refine stage alone", ""]
    rows = []
    for entry in report["refine"]:
        for name, side in entry["sides"].items():
            versus = ((side["differing_pixels"], f"{side['iou_vs_authors']:.4f}") if "iou_vs_authors" in side
                      else ("-", "-"))
            rows.append((entry["size"], entry["band_pixels"], name, f"{side['ms']:.0f}", side["changed_pixels"], *versus))
        if "authors (CPU build)" in entry["sides"]:
            ratio = entry["sides"]["authors (CPU build)"]["ms"] / entry["sides"]["float32"]["ms"]
            rows.append((entry["size"], "", f"ours (float32) is {ratio:.1f}x faster", "", "", "", ""))
    lines += table(("S", "band px", "side", "ms", "changed px", "px differing from the authors'",
                    "IoU vs the authors'"), rows, "rrlrrrr")
    for run in report["pipeline"]:
        lines += ["", f"## The pipeline per stage: {run['arch']} @ {run['resolution']} px on {run['backend']}", "",
                  *table(("stage (ms)", "bilinear", "crf"), (
                      (stage, f"{run['stages_ms']['bilinear'][stage]:.1f}", f"{run['stages_ms']['crf'][stage]:.1f}")
                      for stage in (*STAGES, "total")), "lrr")]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class CrfBenchSettings:
    sizes: tuple[int, ...] = (768, 1024)
    repeats: int = 3
    image: Path | None = None
    mask: Path | None = None
    authors_crf: Path | None = None
    bundle: tuple[Path, ...] = ()
    machine: str = "this machine"
    json: Path | None = None
    markdown: Path | None = None
    command: str = "insid3 bench crf"  # recorded in the report


def run(settings: CrfBenchSettings) -> int:
    if (settings.image is None) != (settings.mask is None):
        raise Insid3Error("--image and --mask go together")
    if settings.repeats < 1 or any(s < 16 or s % 16 for s in settings.sizes):
        raise Insid3Error("--repeats must be >= 1 and --sizes multiples of 16")
    if settings.authors_crf is not None:
        from insid3.benchmarks.crf_authors import load

        authors = load(settings.authors_crf)
    else:
        authors = None
    report = {"command": settings.command,
              "repeats": settings.repeats, "machine": settings.machine, "refine": [], "pipeline": []}
    for size in settings.sizes:
        pixels, first, report["target"] = refine_inputs(size, settings.image, settings.mask)
        report["refine"].append(measure_refine(size, pixels, first, settings.repeats, authors))
        print(f"{PROG}: S={size}: " + ", ".join(f"{k} {v['ms']:.0f} ms" for k, v in report["refine"][-1]["sides"].items()),
              file=sys.stderr)
    for bundle in settings.bundle:
        report["pipeline"].append(measure_pipeline(bundle, settings.repeats))
        print(f"{PROG}: pipeline {bundle}: done", file=sys.stderr)
    write_report(report, ReportFiles(json=settings.json, markdown=settings.markdown), markdown=markdown, indent=1)
    print(markdown(report))
    return 0
