"""PerMIS (`permis`): docs/evaluation.md, "PerMIS".

R/PerMIRS/<video>/{0,1,2}.jpg and R/PerMIRS/<video>/masks.npz.npy (an object array of three
dicts whose first value is the frame's mask). Every video folder, in os.listdir order, gives two
episodes: frame 0 as the one reference for frame 1, then for frame 2. No draw; --shots is
ignored (always one reference), as in the authors' loader.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from insid3.evaluation.datasets.base import DatasetError, require_file, require_folder
from insid3.evaluation.datasets.files import check_same_size, read_rgb
from insid3.evaluation.episode import Episode, Item, LoadedItem

MASKS_FILE = "masks.npz.npy"  # really this name: the generator np.save()s to "masks.npz"


class PermisBenchmark:
    name = "permis"
    num_classes = 1
    class_ids = (0,)

    def __init__(self, data_root: str, fold: int | None, shots: int) -> None:
        self.base = os.path.join(str(data_root), "PerMIRS")
        require_folder(self.base, "PerMIS folder")
        self.videos = os.listdir(self.base)  # filesystem order, as theirs
        if not self.videos:
            raise DatasetError(f"PerMIS folder {self.base} has no video folder")
        for video in self.videos:
            require_file(os.path.join(self.base, video, MASKS_FILE), "PerMIS masks file")

    def __len__(self) -> int:
        return 2 * len(self.videos)

    def _item(self, video: str, frame: int) -> Item:
        folder = os.path.join(self.base, video)
        return Item(image=os.path.join(folder, f"{frame}.jpg"), annotation=os.path.join(folder, MASKS_FILE), object=frame)

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]:
        for v, video in enumerate(self.videos):
            for t, target in enumerate((1, 2)):
                yield Episode(2 * v + t, 0, self._item(video, target), (self._item(video, 0),))

    @lru_cache(maxsize=64)
    def _frames(self, path: str) -> list[np.ndarray]:
        try:
            stored = np.load(path, allow_pickle=True)
            return [np.asarray(next(iter(stored[f].values()))) for f in range(3)]
        except Exception as exc:  # noqa: BLE001 - a bad pickle raises many types
            raise DatasetError(
                f"PerMIS masks file {path} is not an object array of three {{id: mask}} dicts ({exc.__class__.__name__})"
            ) from None

    def load(self, item: Item, class_id: int) -> LoadedItem:
        values = self._frames(item.annotation)[int(item.object)]
        if values.ndim != 2:
            raise DatasetError(f"PerMIS masks file {item.annotation}: frame {item.object}'s mask has shape {values.shape}")
        rgb = read_rgb(item.image)
        check_same_size(rgb, values, item.image, item.annotation)
        return LoadedItem(rgb=rgb, mask=values.astype(np.int32) > 0)  # .int(), then > 0 (their ref) or > 0.5 (their GT): the same

    def class_name(self, class_id: int) -> str:
        return "instance"
