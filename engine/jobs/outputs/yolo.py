"""`--format yolo-seg`: Ultralytics YOLO segmentation labels.

    labels/<stem>.txt   one row per object: "<class> x1 y1 x2 y2 ... xn yn", the class a 0-based
                        index into data.yaml's names, the vertices of its polygon normalised by
                        the image's width and height into [0, 1]; an empty file when there is none
    images/<name>       a symbolic link to each target (relative: it survives moving the images
                        and this folder together)
    data.yaml           path (this folder), train / val (images/), names {0: first concept, ...}

Objects are the connected components of each concept's mask of at least --min-area pixels, one
polygon each (polygons.py; a component whose outline splits gives one row per part). Ultralytics
finds a label by replacing /images/ with /labels/ in its image's path, so the links in images/
make the folder a dataset it trains on as it is (`yolo segment train data=OUT/data.yaml`). A URI
target (--ray) cannot be linked: copy it into images/ yourself, as data.yaml's comment says.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

import yaml

from insid3.engine.jobs.job_folder import hold_folder, link_atomically, make_folder, release_folder
from insid3.engine.jobs.outputs.files import DoneLog, write_atomically
from insid3.engine.jobs.outputs.options import OutputOptions
from insid3.engine.jobs.outputs.polygons import mask_polygons
from insid3.engine.runtime.concepts import ConceptsResult

DATA_FILE = "data.yaml"
LABELS = "labels"
IMAGES = "images"
DATA_COMMENT = """\
# Ultralytics YOLO segmentation dataset written by insid3-segment
# images/ holds a link to each target (labels/<stem>.txt is its label file): train with
#   yolo segment train data=<this file>
# train and val both name every image: to hold images out for validation, move their links from
# images/ into another folder whose name is images (say val/images, with val/labels beside it
# holding their label files) and point val at it. Targets given as URIs (--ray) have no link:
# copy each into images/ under its own name.
"""


def data_yaml(folder: Path, names: tuple[str, ...]) -> str:
    data = {"path": str(folder.resolve()), "train": IMAGES, "val": IMAGES,
            "names": dict(enumerate(names))}
    return DATA_COMMENT + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


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
        hold_folder(folder)  # before reading its log: no other job may write there now
        self.folder, self.labels, self.options, self.log = folder, folder / LABELS, options, DoneLog(folder)
        self.images = folder / IMAGES

    def link(self, target: Path) -> None:
        """images/<name>, a relative link to the target (a URI has none)."""
        if isinstance(target, PurePath):
            make_folder(self.images)
            link_atomically(self.images / target.name,
                            os.path.relpath(os.path.realpath(target), os.path.realpath(self.images)))

    def done(self, target: Path) -> bool:
        """Its label file exists and this job's log names it (its image link was made before it)."""
        return target in self.log and (self.labels / f"{target.stem}.txt").is_file()

    def has_outputs(self) -> bool:
        return any(self.labels.glob("*.txt"))

    def start(self, *, fresh: bool) -> None:
        if fresh:  # another job's label files are redone, never trusted
            self.log.forget()
        make_folder(self.labels)
        write_atomically(self.folder / DATA_FILE, data_yaml(self.folder, self.options.names).encode())

    def write(self, target: Path, result: ConceptsResult) -> None:
        rows = label_rows(result, self.options.min_area, self.options.tolerance)
        self.link(target)
        write_atomically(self.labels / f"{target.stem}.txt", "".join(f"{row}\n" for row in rows).encode())
        self.log.add(target)

    def close(self) -> None:
        """Every label file is complete once written; the folder is let go (removed if this job
        made it and wrote no label there)."""
        self.log.close()
        release_folder(self.folder, unused=not self.log.added)
