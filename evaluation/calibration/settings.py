"""What one calibration is given (engine/cli/calibrate.py builds it from the command line)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from insid3.evaluation.calibration.examples import ExampleSource


@dataclass(frozen=True, kw_only=True)
class CalibrationSettings:
    """bundle: the engine bundle; source: the labelled examples; negatives: folders of images
    without any of the concepts; out: the output folder (log, reports, heatmap, profile).
    shots: references per episode; episodes: the first N of the seeded order (None: all);
    seed: the episodes' numpy legacy seed; svd_components / tau / merge_threshold: the grids
    (None: around the bundle's defaults); refine: the refinements swept."""

    bundle: Path
    source: ExampleSource
    out: Path
    negatives: tuple[Path, ...] = ()
    negatives_per_concept: int | None = None  # None: as many as the concept's labelled images
    shots: int = 1
    episodes: int | None = None
    seed: int = 0
    svd_components: tuple[int, ...] | None = None
    tau: tuple[float, ...] | None = None
    merge_threshold: tuple[float, ...] | None = None
    refine: tuple[str, ...] = ("bilinear",)
    protocol: str = "square"
    backend: str = "auto"
    precision: str = "fp32"
    cache_mib: int = 2048
    feature_cache: Path | None = None
    bootstrap: int = 1000
    overwrite: bool = False
    progress: bool = True
    heatmap: bool = True
