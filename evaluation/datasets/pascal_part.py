"""Pascal-Part (`pascal_part`): docs/evaluation.md, "Pascal-Part".

Under R/Pascal-Part/VOCdevkit/VOC2010/: all_obj_part_to_image.json lists, per category (the
fold: animals, indoor, person, vehicles), every object's parts with their train and val image
ids; JPEGImages/<id>.jpg; Annotations_Part_json_merged_part_classes/<id>.json holds each image's
objects (name, bndbox, parts with RLE masks). A class is an (object, part) pair with train and
val images (aeroplane+TAIL excluded); episode i takes pair i mod n, draws a target image and one
of its objects of that name until the object has the part, then distinct references the same
way; every image and mask is cropped to its object's box.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from insid3.evaluation.datasets.annotations import decode_part_rles
from insid3.evaluation.datasets.base import DatasetError
from insid3.evaluation.datasets.files import check_same_size, crop, read_json, read_rgb
from insid3.evaluation.episode import Episode, Item, LoadedItem
from insid3.evaluation.sampling import SamplingError, draw

CATEGORIES = ("animals", "indoor", "person", "vehicles")
EXCLUDED = "aeroplane+TAIL"
MAX_EPISODES = 2500
# Failed draws in a row after which we check that some image can still succeed (the authors'
# loops never end when none can); checking costs a read of every listed annotation, once.
_PATIENCE = 200


class PascalPartBenchmark:
    name = "pascal_part"

    def __init__(self, data_root: str, fold: int, shots: int) -> None:
        self.base = os.path.join(str(data_root), "Pascal-Part/VOCdevkit/VOC2010")
        index_path = os.path.join(self.base, "all_obj_part_to_image.json")
        index = read_json(index_path, "Pascal-Part index")
        if not -len(CATEGORIES) <= fold < len(CATEGORIES):
            raise DatasetError(f"Pascal-Part has folds 0..3 (animals, indoor, person, vehicles), got {fold}")
        self.category = CATEGORIES[fold]  # Python indexing: fold -1 is vehicles, as theirs
        try:
            objects = index[self.category]["object"]
            self.pairs: list[tuple[str, str, list[str]]] = []
            total = 0
            for obj, entry in objects.items():
                for part, lists in entry["part"].items():
                    total += len(lists["val"])  # every pair counts toward the length, excluded or not
                    if lists["train"] and lists["val"] and f"{obj}+{part}" != EXCLUDED:
                        self.pairs.append((obj, part, list(lists["val"])))
        except (KeyError, TypeError, AttributeError):
            raise DatasetError(
                f"Pascal-Part index {index_path} has no {self.category!r} -> 'object' -> obj -> 'part' -> "
                "part -> {'train', 'val'} lists"
            ) from None
        if not self.pairs:
            raise DatasetError(f"Pascal-Part index {index_path}: category {self.category!r} has no (object, part) class")
        self.length = min(total, MAX_EPISODES)
        self.shots = shots
        self.class_ids = tuple(range(len(self.pairs)))
        self.num_classes = len(self.pairs)  # the authors' max(class_ids) + 1

    def __len__(self) -> int:
        return self.length

    def _annotation_path(self, image_id: str) -> str:
        return os.path.join(self.base, "Annotations_Part_json_merged_part_classes", f"{image_id}.json")

    @lru_cache(maxsize=4096)
    def _objects(self, image_id: str) -> list:
        path = self._annotation_path(image_id)
        data = read_json(path, "Pascal-Part annotation")
        try:
            return list(data["object"])
        except (KeyError, TypeError):
            raise DatasetError(f"Pascal-Part annotation {path} has no 'object' list") from None

    def _part_mask(self, image_id: str, object_index: int, part: str) -> np.ndarray | None:
        """The OR of the object's parts named `part`, None when it has none (a failed draw)."""
        obj = self._objects(image_id)[object_index]
        named = [p for p in obj.get("parts", []) if p.get("name") == part]
        if not named:
            return None
        rles = [rle for p in named for rle in p.get("mask", [])]
        mask = decode_part_rles(rles, self._annotation_path(image_id))
        return None if mask is None or mask.size == 0 else mask

    def _named(self, image_id: str, obj: str) -> list[int]:
        return [i for i, o in enumerate(self._objects(image_id)) if o.get("name") == obj]

    def _can_succeed(self, image_id: str, obj: str, part: str) -> bool:
        return any(self._part_mask(image_id, i, part) is not None for i in self._named(image_id, obj))

    def _box(self, image_id: str, object_index: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) from the bndbox's values in stored order (xmin, ymin, xmax, ymax)."""
        try:
            x0, y0, x1, y1 = (int(v) for v in self._objects(image_id)[object_index]["bndbox"].values())
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DatasetError(
                f"Pascal-Part annotation {self._annotation_path(image_id)}: object {object_index} needs a "
                "bndbox of four numbers"
            ) from None
        return y0, y1, x0, x1

    def _draw_object(self, rng, image_id: str, obj: str, part: str) -> int | None:
        """The authors' object step: draw among the objects named `obj` (a draw even when it then
        lacks the part), None when the image fails."""
        named = self._named(image_id, obj)
        if not named:
            return None
        index = draw(rng, named)
        return index if self._part_mask(image_id, index, part) is not None else None

    def _item(self, image_id: str, object_index: int) -> Item:
        return Item(
            image=os.path.join(self.base, "JPEGImages", f"{image_id}.jpg"),
            annotation=self._annotation_path(image_id), object=object_index, crop=self._box(image_id, object_index),
        )

    def _check_alive(self, failures: int, candidates: list[str], obj: str, part: str, what: str) -> None:
        if failures and failures % _PATIENCE == 0 and not any(self._can_succeed(i, obj, part) for i in candidates):
            raise SamplingError(
                f"Pascal-Part class {obj}+{part}: no {what} among its val images has an object {obj!r} "
                f"with a part {part!r}: the authors' loop never ends here"
            )

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]:
        for index in range(self.length):
            j = index % len(self.pairs)
            obj, part, val = self.pairs[j]
            failures = 0
            while True:
                target = str(draw(rng, val, f"val list of {obj}+{part}"))
                target_object = self._draw_object(rng, target, obj, part)
                if target_object is not None:
                    break
                failures += 1
                self._check_alive(failures, val, obj, part, "target")
            chosen: list[tuple[str, int]] = []
            failures = 0
            while len(chosen) < self.shots:
                candidate = str(draw(rng, val, f"val list of {obj}+{part}"))
                taken = candidate == target or any(candidate == c for c, _ in chosen)
                found = None if taken else self._draw_object(rng, candidate, obj, part)
                if found is not None:
                    chosen.append((candidate, found))
                    failures = 0
                    continue
                failures += 1
                left = [i for i in val if i != target and all(i != c for c, _ in chosen)]
                self._check_alive(failures, left, obj, part, f"further reference (distinct, not the target {target})")
            yield Episode(
                index, j, self._item(target, target_object), tuple(self._item(i, o) for i, o in chosen)
            )

    def load(self, item: Item, class_id: int) -> LoadedItem:
        obj, part, _ = self.pairs[class_id]
        image_id = os.path.basename(item.annotation)[: -len(".json")]
        mask = self._part_mask(image_id, int(item.object), part)
        if mask is None:
            raise DatasetError(f"Pascal-Part annotation {item.annotation}: object {item.object} has no part {part!r}")
        rgb = read_rgb(item.image)
        check_same_size(rgb, mask, item.image, item.annotation)
        rgb, mask = crop(rgb, item.crop), crop(mask, item.crop)
        if 0 in mask.shape:
            raise DatasetError(
                f"Pascal-Part annotation {item.annotation}: object {item.object}'s box {item.crop} (y0, y1, x0, x1) "
                "crops the image to nothing"
            )
        return LoadedItem(rgb=np.ascontiguousarray(rgb), mask=np.ascontiguousarray(mask))

    def class_name(self, class_id: int) -> str:
        obj, part, _ = self.pairs[class_id]
        return f"{obj}+{part}"
