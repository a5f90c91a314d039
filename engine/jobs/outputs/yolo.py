"""`--format yolo-seg`: Ultralytics YOLO segmentation labels.

    labels/<stem>.txt   one row per object: "<class> x1 y1 x2 y2 ... xn yn", the class a 0-based
                        index into data.yaml's names, the vertices of its polygon normalised by
                        the image's width and height into [0, 1]; an empty file when there is none
    data.yaml           path (this folder), train / val (images/), names {0: first concept, ...}

Objects are the connected components of each concept's mask of at least --min-area pixels, one
polygon each (polygons.py; a component whose outline splits gives one row per part). Ultralytics
finds a label by replacing /images/ with /labels/ in its image's path: put (or link) the targets
in images/ beside labels/ to train on them.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from insid3.engine.jobs.outputs import OutputOptions
from insid3.engine.jobs.outputs.files import DoneLog, write_atomically
from insid3.engine.jobs.outputs.polygons import mask_polygons
from insid3.engine.runtime.concepts import ConceptsResult

DATA_FILE = "data.yaml"
LABELS = "labels"


def data_yaml(folder: Path, names: tuple[str, ...]) -> str:
    data = {"path": str(folder.resolve()), "train": "images", "val": "images",
            "names": dict(enumerate(names))}
    return "# Ultralytics YOLO segmentation dataset written by insid3-segment\n" + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True)


def label_rows(result: ConceptsResult, min_area: int, tolerance: float) -> list[str]:
    height, width = result.original_size
    rows = []
    for instance in result.instances(min_area=min_area):
        for polygon in mask_polygons(instance.mask, tolerance):
            xs, ys = (polygon[:, 0] / width).clip(0, 1), (polygon[:, 1] / height).clip(0, 1)
            coordinates = " ".join(f"{x:.6f} {y:.6f}" for x, y in zip(xs, ys))
            rows.append(f"{instance.label - 1} {coordinates}")
    return rows


class YoloSegOutputs:
    def __init__(self, folder: Path, options: OutputOptions) -> None:
        self.folder, self.labels, self.options, self.log = folder, folder / LABELS, options, DoneLog(folder)

    def done(self, target: Path) -> bool:
        return target in self.log and (self.labels / f"{target.stem}.txt").is_file()

    def has_outputs(self) -> bool:
        return any(self.labels.glob("*.txt"))

    def start(self, *, fresh: bool) -> None:
        if fresh:  # another job's label files are redone, never trusted
            self.log.forget()
        self.labels.mkdir(exist_ok=True)
        write_atomically(self.folder / DATA_FILE, data_yaml(self.folder, self.options.names).encode())

    def write(self, target: Path, result: ConceptsResult) -> None:
        rows = label_rows(result, self.options.min_area, self.options.tolerance)
        write_atomically(self.labels / f"{target.stem}.txt", "".join(f"{row}\n" for row in rows).encode())
        self.log.add(target)

    def close(self) -> None:
        """Every label file is complete once written."""
        self.log.close()
