"""Keypoint matching's per-target latency for 1, 10 and 100 points, beside the backbone's.

    OPENBLAS_NUM_THREADS=1 insid3 bench match --bundle bundles/dinov3-vits16-768 \
        [--svd-components 20]

One reference encoded once, one target: the backbone on the target (what every target pays),
then the matching of K keypoints on its features (debias in the frame of s, similarity maps,
the Gaussian soft-argmax, the copy back to the host), and the transcription of the authors'
matching (torch, explicit C x C projector on both images' features, as their match() does)
on the very same features when torch is installed. Medians of --repeats runs, side by side.
On a shared CPU pin BLAS to one thread: its threads fight the backbone's and other processes'
and make small GEMMs 10-20x slower.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from insid3.benchmarks.writer import table, table_row
from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.runtime.correspondence import MatchOptions, check_points
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import StageClock
from insid3.errors import SettingsError
from insid3.kernels import to_numpy


def median_ms(run: Callable[[], object], repeats: int, synchronize: Callable[[], None]) -> float:
    run()  # warm: frames, caches, first-call allocations
    times = []
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        run()
        synchronize()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def authors_runner(segmenter: Segmenter, reference, features, target_size, points: np.ndarray, s: int | None):
    """The transcription's matching on the same features, or None without torch."""
    try:
        import torch

        from insid3.authors_way.correspondence import match_features
    except ImportError:
        return None
    basis = None if s is None else torch.from_numpy(segmenter.bundle.positional_basis()[:, :s].copy())
    source, target = torch.from_numpy(to_numpy(reference.features)), torch.from_numpy(to_numpy(features))
    keypoints = torch.from_numpy(points)
    grid = segmenter.bundle.metadata.patch_grid

    def run() -> object:
        with torch.inference_mode():
            return match_features(source, target, keypoints, source_size=reference.original_size,
                                  target_size=target_size, grid=grid, basis=basis)

    return run


@dataclass(frozen=True, kw_only=True)
class MatchBenchSettings:
    bundle: str
    backend: str = "auto"
    points: tuple[int, ...] = (1, 10, 100)
    svd_components: int | None = None
    original: bool = False
    repeats: int = 5


def run(settings: MatchBenchSettings) -> int:
    if settings.repeats < 5 or min(settings.points) < 1:
        raise SettingsError("--repeats must be >= 5 and every --points >= 1")
    segmenter = Segmenter.from_bundle(settings.bundle, backend=settings.backend)
    matcher, sync = segmenter.matcher, segmenter.backend.synchronize
    options = MatchOptions(debiased=not settings.original, svd_components=settings.svd_components)
    s = matcher.components(options)
    (reference_scene, target_scene), = scene_pairs(1, size=(480, 640), seed=0)
    reference = segmenter.encode_image(reference_scene.image)
    prepared = segmenter.prepare(target_scene.image)
    backbone = median_ms(lambda: segmenter.encode([prepared]), settings.repeats, sync)
    features = segmenter.encode([prepared])[0]
    rng = np.random.default_rng(0)
    print(f"# keypoint matching, {segmenter.describe()}; {'original' if s is None else f'debiased, s = {s}'}; "
          f"median of {settings.repeats}\n")
    print(f"backbone (one target): {backbone:.1f} ms\n")
    print("\n".join(table(("points", "ours: matching (ms)", "of which debias (ms)", "ours / backbone",
                           "backbone + matching (ms)", "authors' matching on the same features (ms)", "speed-up"),
                          (), "r" * 7)))
    for count in settings.points:
        points = check_points(rng.uniform(0, [639, 479], size=(count, 2)), reference.original_size)
        clocks: list[StageClock] = []

        def ours_once() -> object:
            clocks.append(StageClock(sync))
            return matcher.correspond(reference, points, features, prepared.original_size, options, clocks[-1])

        ours = median_ms(ours_once, settings.repeats, sync)
        debias = statistics.median(clock.ms.get("debias", 0.0) for clock in clocks[1:])
        authors = authors_runner(segmenter, reference, features, prepared.original_size, points, s)
        theirs = median_ms(authors, settings.repeats, sync) if authors is not None else float("nan")
        print(table_row((count, f"{ours:.2f}", f"{debias:.2f}", f"{100 * ours / backbone:.1f}%",
                         f"{backbone + ours:.1f}", f"{theirs:.2f}", f"{theirs / ours:.1f}x")), flush=True)
    return 0
