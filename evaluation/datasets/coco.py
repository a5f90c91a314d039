"""COCO-20i (`coco`): docs/evaluation.md, "COCO-20i".

R/COCO2014/splits/val/fold{f}.pkl maps each class (0..79) to its val image names in stored
order; the image is R/COCO2014/<name>, its label map R/COCO2014/annotations/<name up to the
first ".jpg">.png (value c + 1 for class c). A run scores the fold's 20 classes f, f + 4, ...;
every episode draws its class, then its target, then its references from the class's list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from insid3.evaluation.datasets.base import DatasetError, require_folder
from insid3.evaluation.datasets.files import check_same_size, read_label_map, read_pickle, read_rgb
from insid3.evaluation.episode import Episode, Item, LoadedItem
from insid3.evaluation.sampling import draw, draw_references

FOLDS = 4
NUM_CLASSES = 80
EPISODES = 1000


def class_ids_of(fold: int) -> list[int]:
    if fold == -1:
        return list(range(NUM_CLASSES))
    return [fold + FOLDS * v for v in range(NUM_CLASSES // FOLDS)]


class CocoBenchmark:
    name = "coco"

    def __init__(self, data_root: str, fold: int, shots: int) -> None:
        self.base = os.path.join(str(data_root), "COCO2014")
        require_folder(self.base, "COCO-20i folder")
        self.shots = shots
        self.class_ids = tuple(class_ids_of(fold))
        self.num_classes = NUM_CLASSES
        self.lists = self._class_lists(fold)

    def _split(self, fold: int) -> dict:
        path = f"{self.base}/splits/val/fold{fold}.pkl"
        split = read_pickle(path, "COCO-20i split")
        if not isinstance(split, dict):
            raise DatasetError(f"COCO-20i split {path} holds a {type(split).__name__}, not a dict of class -> names")
        return split

    def _class_lists(self, fold: int) -> dict[int, list[str]]:
        if fold != -1:
            split = self._split(fold)
            missing = [c for c in self.class_ids if c not in split]
            if missing:
                raise DatasetError(f"COCO-20i split fold{fold}.pkl has no entry for classes {missing[:5]}")
            return {c: list(split[c]) for c in self.class_ids}
        # fold -1: fold0's keys; each fold's list fills an entry that is still empty.
        splits = [self._split(f) for f in range(FOLDS)]
        merged: dict = {c: [] for c in splits[0]}
        for f, split in enumerate(splits):
            for c, names in split.items():
                if c not in merged:
                    raise DatasetError(f"COCO-20i split fold{f}.pkl has class {c}, which fold0.pkl lacks")
                if len(merged[c]) == 0 and len(names) > 0:
                    merged[c] = list(names)
        missing = [c for c in self.class_ids if c not in merged]
        if missing:
            raise DatasetError(f"COCO-20i split fold0.pkl has no entry for classes {missing[:5]}")
        return merged

    def __len__(self) -> int:
        return EPISODES

    def _item(self, name: str) -> Item:
        mask_path = os.path.join(self.base, "annotations", name)
        if ".jpg" not in mask_path:
            raise DatasetError(f"COCO-20i image name {name!r} has no '.jpg': its label map cannot be named")
        return Item(image=os.path.join(self.base, name), annotation=mask_path[: mask_path.index(".jpg")] + ".png")

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]:
        for index in range(EPISODES):
            c = int(draw(rng, self.class_ids, "class list"))
            names = self.lists[c]
            target = draw(rng, names, f"image list of class {c}")
            references = draw_references(rng, names, target_key=target, shots=self.shots, what=f"class {c}")
            yield Episode(index, c, self._item(target), tuple(self._item(n) for n in references))

    def load(self, item: Item, class_id: int) -> LoadedItem:
        rgb = read_rgb(item.image)
        labels = read_label_map(item.annotation)
        check_same_size(rgb, labels, item.image, item.annotation)
        return LoadedItem(rgb=rgb, mask=labels == class_id + 1)

    def class_name(self, class_id: int) -> str:
        return f"class {class_id}"
