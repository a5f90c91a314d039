"""What every benchmark module provides, and the error it raises on bad data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from insid3.errors import Insid3Error
from insid3.evaluation.episode import Episode, Item, LoadedItem


class DatasetError(Insid3Error):
    """A dataset file is missing or malformed: one line naming the file and what was expected."""


class SegmentationBenchmark(Protocol):
    """One run's dataset (a dataset, a fold, a shot count), as the authors' loader builds it.

    class_ids: the meter columns scored, in the authors' order; num_classes: the meter's width
    (NC); len(): the episodes of the full protocol; episodes(rng): Episode 0, 1, ... drawn from
    `rng` in order (lazily: a run of N episodes draws only N); load(item, class_id): the item's
    pixels and masks for that class.
    """

    name: str
    class_ids: tuple[int, ...]
    num_classes: int

    def __len__(self) -> int: ...

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]: ...

    def load(self, item: Item, class_id: int) -> LoadedItem: ...

    def class_name(self, class_id: int) -> str: ...


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} {path} is missing (docs/evaluation.md gives the layout)")
    return path


def require_folder(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{what} {path} is missing (docs/evaluation.md gives the layout)")
    return path
