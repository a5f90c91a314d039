"""The benchmarks insid3-eval knows: one module per dataset family, one registry entry each.

An entry names the dataset as `--dataset` takes it, its title in the paper's Table 1, its folds
(empty: one run, `--fold` ignored), the task, and a builder (data_root, fold, shots) -> the
benchmark of one run. Segmentation benchmarks implement `SegmentationBenchmark` (base.py) and
are scored by metrics.py's IoUMeter.

Adding a dataset with its own metric (e.g. SPair-71k, PCK): write `datasets/<name>.py` with a
class whose constructor takes (data_root, fold, shots) and which yields its episodes the way the
authors' loader draws them, add one `DatasetEntry(..., task="<task>")` to REGISTRY below, and
give runner.py's `run_benchmark` a branch for the new task (its metric in its own module).
Everything else (the CLI's --dataset choices, --all-folds, the episode log, the report) reads
the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from insid3.evaluation.datasets.base import DatasetError, SegmentationBenchmark
from insid3.evaluation.datasets.coco import CocoBenchmark
from insid3.evaluation.datasets.folders import IsicBenchmark, LungBenchmark, SuimBenchmark
from insid3.evaluation.datasets.isaid import IsaidBenchmark
from insid3.evaluation.datasets.lvis import LvisBenchmark
from insid3.evaluation.datasets.paco_part import PacoPartBenchmark
from insid3.evaluation.datasets.pascal_part import PascalPartBenchmark
from insid3.evaluation.datasets.permis import PermisBenchmark

__all__ = ["REGISTRY", "DatasetEntry", "DatasetError", "SegmentationBenchmark", "build_benchmark", "entry"]


@dataclass(frozen=True)
class DatasetEntry:
    name: str  # the --dataset value
    title: str  # the column of the paper's Table 1
    folds: tuple[int, ...]  # () for datasets without folds
    build: Callable[[str, int | None, int], SegmentationBenchmark]
    task: str = "segmentation"
    published: tuple[tuple[int, float], ...] = ()  # (shots, the paper's figure), ViT-L at 1024
    published_folds: tuple[tuple[int, int, float], ...] = ()  # (shots, fold, the authors' fold figure)

    def published_for(self, shots: int) -> float | None:
        return dict(self.published).get(shots)

    def published_for_fold(self, shots: int, fold: int | None) -> float | None:
        return {(k, f): v for k, f, v in self.published_folds}.get((shots, fold))


# In the order of the paper's Table 1.
REGISTRY: dict[str, DatasetEntry] = {
    e.name: e
    for e in (
        DatasetEntry("coco", "COCO-20i", (0, 1, 2, 3), CocoBenchmark, published=((1, 57.6), (5, 65.1)),
                     published_folds=((1, 0, 57.1), (1, 1, 61.2), (1, 2, 55.8), (1, 3, 56.1))),
        DatasetEntry("lvis", "LVIS-92i", tuple(range(10)), LvisBenchmark, published=((1, 41.8), (5, 47.2))),
        DatasetEntry("isic", "ISIC", (), IsicBenchmark, published=((1, 54.4),)),
        DatasetEntry("suim", "SUIM", (), SuimBenchmark, published=((1, 54.9),)),
        DatasetEntry("isaid", "iSAID-5i", (0, 1, 2), IsaidBenchmark, published=((1, 52.1),)),
        DatasetEntry("lung", "Chest X-Ray", (), LungBenchmark, published=((1, 78.8),)),
        DatasetEntry("pascal_part", "Pascal-Part", (0, 1, 2, 3), PascalPartBenchmark, published=((1, 50.5),)),
        DatasetEntry("paco_part", "PACO-Part", (0, 1, 2, 3), PacoPartBenchmark, published=((1, 38.7),)),
        DatasetEntry("permis", "PerMIS", (), PermisBenchmark, published=((1, 67.0),)),
    )
}


def entry(name: str) -> DatasetEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}: one of {', '.join(REGISTRY)}") from None


def build_benchmark(name: str, data_root: str, fold: int | None, shots: int) -> SegmentationBenchmark:
    """The benchmark of one run; `fold` is ignored by datasets without folds (as the authors')."""
    if shots < 1:
        raise DatasetError(f"shots must be >= 1, got {shots}")
    spec = entry(name)
    if spec.folds and fold is None:
        fold = spec.folds[0]
    return spec.build(str(data_root), fold if spec.folds else None, shots)
