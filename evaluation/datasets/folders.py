"""The three folder datasets: ISIC 2018 (`isic`), Chest X-ray (`lung`) and SUIM (`suim`).

Each lists its masks (or images) per category with `sorted(glob(folder + '/*'))`, draws a target
and references from the category's list (the category cycles with the episode index; one
category for Chest X-ray), and reads masks as convert('L') >= 128. Layouts:
- ISIC: R/ISIC/ISIC2018_Task1-2_Training_Input/{1,2,3}/<stem>.jpg, masks
  R/ISIC/ISIC2018_Task1_Training_GroundTruth/<stem>_segmentation.png; 600 episodes.
- Chest X-ray: R/LungSegmentation/masks/<name>.png (the list), images R/LungSegmentation/CXR_png/:
  the mask's own name for MCUCXR masks, else its name without `_mask.png`, plus `.png`; 600.
- SUIM: R/SUIM/masks/{FV,HD,PF,RI,RO,SR,WR}/<stem>.<any> (empty masks left out), images
  R/SUIM/images/<stem>.jpg; as many episodes as kept masks.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import numpy as np

from insid3.evaluation.datasets.base import DatasetError, require_folder
from insid3.evaluation.datasets.files import check_same_size, read_grey_mask, read_rgb
from insid3.evaluation.episode import Episode, Item, LoadedItem
from insid3.evaluation.sampling import draw, draw_references


def sorted_listing(folder: str) -> list[str]:
    """sorted(glob(folder + '/*')): full paths in Python string order, hidden files left out."""
    return sorted(glob.glob("%s/*" % folder))


def second_field(path: str) -> str:
    """basename.split('.')[1], the extension test of the authors' loaders."""
    fields = os.path.basename(path).split(".")
    if len(fields) < 2:
        raise DatasetError(f"{path} has no '.' in its name (the authors' loader fails on it): move it out")
    return fields[1]


class FolderBenchmark:
    """Cyclic categories, each a list of paths; `_item` maps a listed path to its image and mask."""

    name = ""
    categories: tuple[str, ...] = ()
    episodes_per_run: int | None = None  # None: one per listed path
    num_classes = 0

    def __init__(self, shots: int) -> None:
        self.shots = shots
        self.lists = {k: self._listing(category) for k, category in enumerate(self.categories)}
        self.class_ids = tuple(range(len(self.categories)))

    def _listing(self, category: str) -> list[str]:
        raise NotImplementedError

    def _item(self, path: str) -> Item:
        raise NotImplementedError

    def __len__(self) -> int:
        if self.episodes_per_run is None:
            return sum(len(paths) for paths in self.lists.values())
        return self.episodes_per_run

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]:
        for index in range(len(self)):
            k = index % len(self.categories)
            paths = self.lists[k]
            what = f"{self.name} category {self.categories[k]}"
            target = draw(rng, paths, what)
            references = draw_references(rng, paths, target_key=target, shots=self.shots, what=what)
            yield Episode(index, k, self._item(target), tuple(self._item(p) for p in references))

    def load(self, item: Item, class_id: int) -> LoadedItem:
        rgb = read_rgb(item.image)
        mask = read_grey_mask(item.annotation)
        check_same_size(rgb, mask, item.image, item.annotation)
        return LoadedItem(rgb=rgb, mask=mask)

    def class_name(self, class_id: int) -> str:
        return self.categories[class_id]


class IsicBenchmark(FolderBenchmark):
    name = "isic"
    categories = ("1", "2", "3")
    episodes_per_run = 600
    num_classes = 3

    def __init__(self, data_root: str, fold: int | None, shots: int) -> None:
        base = os.path.join(str(data_root), "ISIC")
        self.images = os.path.join(base, "ISIC2018_Task1-2_Training_Input")
        require_folder(self.images, "ISIC images folder")
        self.masks = os.path.join(base, "ISIC2018_Task1_Training_GroundTruth")
        super().__init__(shots)

    def _listing(self, category: str) -> list[str]:
        folder = os.path.join(self.images, category)
        require_folder(folder, "ISIC category folder")
        return [path for path in sorted_listing(folder) if second_field(path) == "jpg"]

    def _item(self, path: str) -> Item:
        stem = path.split("/")[-1].split(".")[0]
        return Item(image=path, annotation=os.path.join(self.masks, stem) + "_segmentation.png")


class LungBenchmark(FolderBenchmark):
    name = "lung"
    categories = ("1",)
    episodes_per_run = 600
    num_classes = 2  # the authors' table; only column 0 is scored

    def __init__(self, data_root: str, fold: int | None, shots: int) -> None:
        base = os.path.join(str(data_root), "LungSegmentation")
        self.masks = os.path.join(base, "masks")
        require_folder(self.masks, "Chest X-ray masks folder")
        self.images = os.path.join(base, "CXR_png")
        super().__init__(shots)

    def _listing(self, category: str) -> list[str]:
        return [path for path in sorted_listing(self.masks) if second_field(path) == "png"]

    def _item(self, path: str) -> Item:
        # MCUCXR masks share their image's name; the others end in "_mask.png" (9 characters).
        name = os.path.basename(path) if "MCUCXR" in path else os.path.basename(path)[:-9] + ".png"
        return Item(image=os.path.join(self.images, name), annotation=path)


class SuimBenchmark(FolderBenchmark):
    name = "suim"
    categories = ("FV", "HD", "PF", "RI", "RO", "SR", "WR")
    num_classes = 7

    def __init__(self, data_root: str, fold: int | None, shots: int) -> None:
        base = os.path.join(str(data_root), "SUIM")
        self.masks = os.path.join(base, "masks")
        require_folder(self.masks, "SUIM masks folder")
        self.images = os.path.join(base, "images")
        super().__init__(shots)

    def _listing(self, category: str) -> list[str]:
        folder = os.path.join(self.masks, category)
        require_folder(folder, "SUIM category folder")
        return [path for path in sorted_listing(folder) if read_grey_mask(path).any()]  # empty masks left out

    def _item(self, path: str) -> Item:
        stem = path.split("/")[-1].split(".")[0]
        return Item(image=os.path.join(self.images, stem) + ".jpg", annotation=path)
