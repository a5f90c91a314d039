"""`insid3 eval --dataset spair`: SPair-71k keypoint matching scored by PCK, through the engine.

Every pair of SPair-71k/Layout/large/test.txt, in order; PCK@0.05/0.10/0.15/0.20 per pair,
averaged over all pairs as the authors report it, plus per-category figures. Writes
OUT/<run>.json and OUT/<run>.per_class_score.txt (the authors' table); the authors' summary line
is returned for stdout. docs/correspondence.md gives the layout and the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from insid3.engine.jobs.job_folder import write_atomically
from insid3.engine.runtime.correspondence import MatchOptions
from insid3.engine.runtime.segmenter import Segmenter
from insid3.evaluation.datasets.spair import SpairDataset
from insid3.evaluation.pck import ALPHAS, per_class_table, summary_line
from insid3.evaluation.spair_run import SpairOptions, evaluate_spair

DATASETS = ("spair",)  # what `insid3 eval --dataset` scores as keypoints, not masks
README_FIGURES = {  # the authors' README, ViT-B at 768 px: PCK@(0.05, 0.1, 0.15, 0.2)
    "original": (30.1, 46.8, 55.6, 61.2),
    "debiased (s = 20)": (33.7, 52.6, 62.5, 68.7),
}


@dataclass(frozen=True, kw_only=True)
class SpairJobSettings:
    bundle: str
    data_root: str
    debiased: bool = True
    svd_components: int | None = None  # None: the bundle's
    pairs: int | None = None  # the first N pairs of the list; None: all
    backend: str = "auto"
    precision: str = "fp32"
    batch_size: int = 8
    out: Path = Path("insid3-eval-out")
    progress: bool = True


def run_spair_job(settings: SpairJobSettings, say: Callable[[str], None]) -> str:
    """Score the pairs, write the reports; the authors' summary line."""
    dataset = SpairDataset(settings.data_root)  # every annotation read and checked before the model loads
    segmenter = Segmenter.from_bundle(settings.bundle, backend=settings.backend, precision=settings.precision)
    options = SpairOptions(debiased=settings.debiased, svd_components=settings.svd_components,
                           batch_size=settings.batch_size, pairs=settings.pairs, progress=settings.progress)
    s = segmenter.matcher.components(MatchOptions(debiased=settings.debiased, svd_components=settings.svd_components))
    say(f"{segmenter.describe()}; SPair-71k, {'debiased, s=' + str(s) if s is not None else 'original'}")
    meter = evaluate_spair(segmenter, dataset, options)
    means = meter.means()
    name = f"spair-{'debiased-s' + str(s) if s is not None else 'original'}"
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "dataset": "spair", "pairs": meter.pairs, "debiased": settings.debiased, "svd_components": s,
        "pck": {f"{a}": 100 * means["all"][a] for a in ALPHAS},
        "per_category": {c: {f"{a}": 100 * v[a] for a in ALPHAS} for c, v in sorted(means.items()) if c != "all"},
        "readme_figures_vit_b_768": {row: dict(zip(map(str, ALPHAS), f)) for row, f in README_FIGURES.items()},
        "bundle": segmenter.bundle.metadata.to_json(), "backend": segmenter.backend.name,
    }
    write_atomically(out / f"{name}.json", (json.dumps(report, indent=1) + "\n").encode())  # a full disk: one line
    write_atomically(out / f"{name}.per_class_score.txt", per_class_table(means).encode())
    say(f"{meter.pairs} pairs; reports {out / name}.json and .per_class_score.txt")
    return summary_line(means)
