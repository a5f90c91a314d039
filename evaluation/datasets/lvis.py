"""LVIS-92i (`lvis`): docs/evaluation.md, "LVIS-92i".

R/LVIS/lvis_val.pkl maps each category id to {image path: {'annotations': [{'segmentation':
...}, ...]}}; images are R/LVIS/coco/<path>. The categories with more than `shots` images, in
stored order, are dealt round-robin into 10 folds; episode i scores fold class i mod P (so the
class set depends on the shot count, as the authors'), and its mask is the union of every
annotation of that category in the image.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from insid3.evaluation.datasets.annotations import union_of_segmentations
from insid3.evaluation.datasets.base import DatasetError, require_folder
from insid3.evaluation.datasets.files import read_pickle, read_rgb
from insid3.evaluation.episode import Episode, Item, LoadedItem
from insid3.evaluation.sampling import draw, draw_references

FOLDS = 10
NUM_CLASSES = 1203
EPISODES = 2300


class LvisBenchmark:
    name = "lvis"

    def __init__(self, data_root: str, fold: int, shots: int) -> None:
        root = os.path.join(str(data_root), "LVIS")
        require_folder(root, "LVIS-92i folder")
        self.base = os.path.join(root, "coco")
        self.pickle_path = os.path.join(root, "lvis_val.pkl")
        self.shots = shots
        self.annotations = read_pickle(self.pickle_path, "LVIS-92i annotations")
        if not isinstance(self.annotations, dict):
            raise DatasetError(f"LVIS-92i annotations {self.pickle_path} hold a {type(self.annotations).__name__}, not a dict")
        eligible = [c for c in self.annotations if len(self.annotations[c]) > shots]
        per_fold = len(eligible) // FOLDS
        if per_fold == 0:
            raise DatasetError(
                f"LVIS-92i annotations {self.pickle_path}: {len(eligible)} categories have more than {shots} "
                f"images, fewer than the {FOLDS} folds need (the authors' loader divides by zero here)"
            )
        first = 0 if fold == -1 else fold  # fold -1 is fold 0's classes in the authors' code
        self.categories = [eligible[first + FOLDS * v] for v in range(per_fold)]
        self.class_ids = tuple(range(per_fold))
        self.num_classes = NUM_CLASSES

    def __len__(self) -> int:
        return EPISODES

    def _item(self, name: str) -> Item:
        return Item(image=os.path.join(self.base, name), annotation=self.pickle_path, entry=name)

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]:
        for index in range(EPISODES):
            j = index % len(self.categories)
            category = self.categories[j]
            names = list(self.annotations[category].keys())
            target = draw(rng, names, f"image list of category {category}")
            references = draw_references(
                rng, names, target_key=target, shots=self.shots, what=f"category {category}"
            )
            yield Episode(index, j, self._item(target), tuple(self._item(n) for n in references))

    def load(self, item: Item, class_id: int) -> LoadedItem:
        category = self.categories[class_id]
        name = item.entry
        rgb = read_rgb(item.image)
        try:
            entry = self.annotations[category][name]
            segmentations = [annotation["segmentation"] for annotation in entry["annotations"]]
        except (KeyError, TypeError):
            raise DatasetError(
                f"LVIS-92i annotations {self.pickle_path}: category {category}, image {name} has no "
                "'annotations' list of {'segmentation': ...}"
            ) from None
        where = f"LVIS-92i category {category}, image {name}"
        mask = union_of_segmentations(segmentations, rgb.shape[0], rgb.shape[1], where)
        return LoadedItem(rgb=rgb, mask=mask)

    def class_name(self, class_id: int) -> str:
        return f"category {self.categories[class_id]}"
