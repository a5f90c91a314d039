"""iSAID-5i (`isaid`): docs/evaluation.md, "iSAID-5i".

R/iSAID/splits/val/fold{f}.txt lists one `<name>__<k>` per line (class k - 1; the file is read
whole and split on newlines, last element dropped, so it must end with a newline); images are
R/iSAID/val/images/<name>.png (passed to the model as opened), label maps
R/iSAID/val/semantic_png/<name>_instance_color_RGB.png (single channel: 0 background, k class
k, 255 boundary). Episode i is line i; only its references are drawn. The target's boundary
pixels are ignored in the metric: its ignore map goes to the comparison grid with the same
nearest rule as its mask (the authors' HEAD forgets that resize and crashes unless the images
are R x R; their first release resized the label map first, which is the same).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from insid3.evaluation.datasets.base import DatasetError, require_file, require_folder
from insid3.evaluation.datasets.files import check_same_size, read_label_map, read_rendered
from insid3.evaluation.episode import Episode, Item, LoadedItem
from insid3.evaluation.sampling import draw_references

FOLDS = 3
NUM_CLASSES = 15


class IsaidBenchmark:
    name = "isaid"

    def __init__(self, data_root: str, fold: int, shots: int) -> None:
        self.base = os.path.join(str(data_root), "iSAID")
        require_folder(self.base, "iSAID-5i folder")
        if not 0 <= fold < FOLDS:
            raise DatasetError(f"iSAID-5i has folds 0..2, got {fold} (the authors' fold -1 reads a missing file)")
        path = f"{self.base}/splits/val/fold{fold}.txt"
        with open(require_file(path, "iSAID-5i split"), encoding="utf-8") as handle:
            lines = handle.read().split("\n")[:-1]  # as theirs: a last line without newline is lost
        self.lines: list[tuple[str, int]] = []
        for number, line in enumerate(lines, 1):
            fields = line.split("__")
            try:
                self.lines.append((fields[0], int(fields[1]) - 1))
            except (IndexError, ValueError):
                raise DatasetError(f"iSAID-5i split {path} line {number} is {line!r}, not <name>__<class>") from None
            if not 0 <= self.lines[-1][1] < NUM_CLASSES:
                raise DatasetError(f"iSAID-5i split {path} line {number}: class {fields[1]} is not in 1..{NUM_CLASSES}")
        self.per_class: dict[int, list[str]] = {k: [] for k in range(NUM_CLASSES)}
        for name, k in self.lines:
            self.per_class[k].append(name)
        self.shots = shots
        self.class_ids = tuple(fold * (NUM_CLASSES // FOLDS) + i for i in range(NUM_CLASSES // FOLDS))
        self.num_classes = NUM_CLASSES

    def __len__(self) -> int:
        return len(self.lines)

    def _item(self, name: str) -> Item:
        return Item(
            image=os.path.join(self.base, "val/images", name) + ".png",
            annotation=os.path.join(self.base, "val/semantic_png", name) + "_instance_color_RGB.png",
        )

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]:
        for index, (target, k) in enumerate(self.lines):
            references = draw_references(rng, self.per_class[k], target_key=target, shots=self.shots, what=f"class {k}")
            yield Episode(index, k, self._item(target), tuple(self._item(n) for n in references))

    def load(self, item: Item, class_id: int) -> LoadedItem:
        rgb = read_rendered(item.image)
        values = read_label_map(item.annotation).astype(np.float32)
        check_same_size(rgb, values, item.image, item.annotation)
        return LoadedItem(rgb=rgb, mask=values == class_id + 1, ignore=np.floor(values / np.float32(255)))

    def class_name(self, class_id: int) -> str:
        return f"class {class_id + 1}"
