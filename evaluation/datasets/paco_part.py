"""PACO-Part (`paco_part`): docs/evaluation.md, "PACO-Part".

R/PACO-Part/paco/paco_part_train.pkl gives the 448 part categories (its 'cid2img' keys, in
stored order, dealt into 4 folds); paco_part_val.pkl gives, per category, its val images
({image_id: path}, first entry per image kept) and, per image, its annotations (category_id,
obj_ann_id, obj_bbox [x, y, w, h], segmentation). Images are R/PACO-Part/coco/<last two parts of
the path>. Every episode draws its class, a target and one of its objects, then references (by
image name, repeats allowed) and one object each; images and masks are cropped to the object's
box, and the whole draw restarts when a crop is empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
from PIL import Image

from insid3.evaluation.datasets.annotations import union_of_segmentations
from insid3.evaluation.datasets.base import DatasetError
from insid3.evaluation.datasets.files import check_same_size, crop, read_pickle, read_rgb, require_file
from insid3.evaluation.episode import Episode, Item, LoadedItem
from insid3.evaluation.sampling import SamplingError, draw

FOLDS = 4
NUM_CLASSES = 448
EPISODES = 2500


def _crop_box(bbox) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) = int(y), int(y + h), int(x), int(x + w): int of the sums, as theirs."""
    x, y, w, h = bbox
    return int(y), int(y + h), int(x), int(x + w)


def _cropped_length(length: int, start: int, stop: int) -> int:
    return len(range(length)[start:stop])


class PacoPartBenchmark:
    name = "paco_part"

    def __init__(self, data_root: str, fold: int, shots: int) -> None:
        self.images = os.path.join(str(data_root), "PACO-Part", "coco")
        self.pickles = os.path.join(str(data_root), "PACO-Part", "paco")
        train_path = os.path.join(self.pickles, "paco_part_train.pkl")
        self.val_path = os.path.join(self.pickles, "paco_part_val.pkl")
        train, val = read_pickle(train_path, "PACO-Part train split"), read_pickle(self.val_path, "PACO-Part val split")
        try:
            train_classes = list(train["cid2img"].keys())
            lists, self.annotations = val["cid2img"], val["img2anno"]
            self.lists: dict = {}
            for cid, entries in lists.items():  # the first entry per image id, in stored order
                seen: list = []
                kept = []
                for entry in entries:
                    image_id = next(iter(entry.keys()))
                    if image_id not in seen:
                        seen.append(image_id)
                        kept.append(entry)
                self.lists[cid] = kept
        except (KeyError, TypeError, AttributeError, StopIteration):
            raise DatasetError(
                f"PACO-Part splits {train_path} / {self.val_path} need 'cid2img' (and 'img2anno' in val) "
                "as docs/evaluation.md describes"
            ) from None
        if len(train_classes) != NUM_CLASSES:
            raise DatasetError(f"PACO-Part train split {train_path} has {len(train_classes)} categories, not {NUM_CLASSES}")
        if not -FOLDS <= fold < FOLDS:
            raise DatasetError(f"PACO-Part has folds 0..3, got {fold}")
        eligible = [c for c in self.lists if len(self.lists[c]) > shots]
        first = 0 if fold == -1 else fold  # fold -1 is fold 0's slots in the authors' code
        slots = [train_classes[first + FOLDS * v] for v in range(NUM_CLASSES // FOLDS)]
        self.categories = [c for c in slots if c in eligible]
        if not self.categories:
            raise DatasetError(
                f"PACO-Part: none of fold {fold}'s categories has more than {shots} val images in {self.val_path}"
            )
        self.shots = shots
        self.class_ids = tuple(range(len(self.categories)))
        self.num_classes = NUM_CLASSES

    def __len__(self) -> int:
        return EPISODES

    def _objects(self, image_id, category) -> dict:
        """obj_ann_id -> (its first obj_bbox, its segmentations), in first-appearance order."""
        objects: dict = {}
        try:
            for annotation in self.annotations[image_id]:
                if annotation["category_id"] == category:
                    box, segmentations = objects.setdefault(annotation["obj_ann_id"], (annotation["obj_bbox"], []))
                    segmentations.append(annotation["segmentation"])
        except (KeyError, TypeError):
            raise DatasetError(
                f"PACO-Part val split {self.val_path}: image {image_id} needs annotations with category_id, "
                "obj_ann_id, obj_bbox and segmentation"
            ) from None
        return objects

    @lru_cache(maxsize=65536)
    def _image_size(self, path: str) -> tuple[int, int]:
        """(H, W) from the file's header (the draw depends on whether a crop is empty)."""
        try:
            with Image.open(require_file(path, "PACO-Part image")) as image:
                return image.height, image.width
        except OSError as exc:
            raise DatasetError(f"cannot read PACO-Part image {path}: {exc}") from None

    def _pick(self, rng, entry: dict, category) -> tuple[Item, bool]:
        """An image entry and one of its objects drawn: the item and whether its crop is empty."""
        image_id, path = next(iter(entry.items()))
        name = "/".join(str(path).split("/")[-2:])
        objects = self._objects(image_id, category)
        if not objects:
            raise DatasetError(
                f"PACO-Part val split {self.val_path}: image {image_id} is listed for category {category} but "
                "has no annotation of it (the authors' loader raises ValueError here)"
            )
        object_id = draw(rng, list(objects.keys()))
        box = _crop_box(objects[object_id][0])
        image = os.path.join(self.images, name)
        height, width = self._image_size(image)
        empty = _cropped_length(height, box[0], box[1]) == 0 or _cropped_length(width, box[2], box[3]) == 0
        return Item(image=image, annotation=self.val_path, entry=image_id, object=int(object_id), crop=box), empty

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]:
        for index in range(EPISODES):
            while True:  # the whole draw again, class included, while a crop is empty
                category = draw(rng, self.categories, "class list")
                entries = self.lists[category]
                target_entry = draw(rng, entries, f"image list of category {category}")
                target, empty = self._pick(rng, target_entry, category)
                target_name = "/".join(target.image.split("/")[-2:])
                names = ["/".join(str(next(iter(e.values()))).split("/")[-2:]) for e in entries]
                if all(n == target_name for n in names):
                    raise SamplingError(
                        f"PACO-Part category {category}: every val image is named {target_name}: "
                        "the authors' reference loop never ends here"
                    )
                references = []
                while True:  # by name, repeats allowed; the object draw only for a kept reference
                    entry = draw(rng, entries)
                    if "/".join(str(next(iter(entry.values()))).split("/")[-2:]) != target_name:
                        item, item_empty = self._pick(rng, entry, category)
                        references.append(item)
                        empty = empty or item_empty
                    if len(references) == self.shots:
                        break
                if not empty:
                    break
            yield Episode(index, self.categories.index(category), target, tuple(references))

    def load(self, item: Item, class_id: int) -> LoadedItem:
        category = self.categories[class_id]
        objects = self._objects(item.entry, category)
        if item.object not in objects:
            raise DatasetError(f"PACO-Part val split {self.val_path}: image {item.entry} has no object {item.object}")
        rgb = read_rgb(item.image)
        where = f"PACO-Part image {item.entry}, object {item.object}"
        mask = union_of_segmentations(objects[item.object][1], rgb.shape[0], rgb.shape[1], where)
        check_same_size(rgb, mask, item.image, item.annotation)
        return LoadedItem(rgb=np.ascontiguousarray(crop(rgb, item.crop)), mask=np.ascontiguousarray(crop(mask, item.crop)))

    def class_name(self, class_id: int) -> str:
        return f"category {self.categories[class_id]}"
