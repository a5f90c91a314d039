"""`--format coco` / `coco-rle`: one COCO instances file for the job, masks.coco.json.

    images       one per target: id, file_name (as given), height, width
    annotations  id, image_id, category_id, segmentation, area, bbox [x, y, w, h], score, iscrowd 0
    categories   one per concept, ids 1.. in the order given, named after the concepts

An annotation is a concept's whole mask on a target (none when empty), or with --instances
each of its connected components of at least --min-area pixels. segmentation is COCO's
compressed RLE (exact; always for coco-rle, whatever --segmentation says) or, with --segmentation polygon, the components'
outlines (polygons.py: no holes). area and bbox are the mask's pixels, whichever encoding.

Journalled: each target's record is appended to masks.coco.parts.jsonl and flushed as soon as it
is computed (a torn last line from a crash is dropped on resume), and masks.coco.json is
rebuilt from the journal when the run ends, however it ends. A journal record holds, beside the
entry, `target`: what names the file whatever the spelling of its path (files.target_key). The
file holds one image per target: a target given again under another spelling, or redone, replaces
its record. (file_name stays the path as the job that wrote the record was given it.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from insid3.engine.jobs.job_folder import hold_folder, release_folder
from insid3.engine.jobs.outputs.files import RecordJournal, mask_bbox, write_atomically
from insid3.engine.jobs.outputs.options import OutputOptions
from insid3.engine.jobs.outputs.polygons import mask_polygons
from insid3.engine.runtime.concepts import ConceptsResult
from insid3.engine.runtime.rle import encode_rle

COCO_FILE = "masks.coco.json"
COCO_JOURNAL = "masks.coco.parts.jsonl"


def annotation_pieces(result: ConceptsResult, instances: bool, min_area: int) -> list[tuple[int, np.ndarray]]:
    """(category id, bool mask) of each annotation: every non-empty concept mask, or its components."""
    if instances:
        return [(instance.label, instance.mask) for instance in result.instances(min_area=min_area)]
    return [(concept.label, concept.mask) for concept in result if concept.mask.any()]


def segmentation_of(mask: np.ndarray, kind: str, tolerance: float) -> dict | list[list[float]]:
    if kind == "rle":
        return encode_rle(mask)
    return [[round(float(v), 3) for v in polygon.ravel()] for polygon in mask_polygons(mask, tolerance)]


def target_record(
    file_name: str, result: ConceptsResult, *, segmentation: str = "rle", instances: bool = False, min_area: int = 0,
    tolerance: float = 1.0,
) -> dict:
    """One target's entry: file_name, height, width and its annotations (without ids); an
    annotation's `score` is its concept's quality score (COCO's results convention, docs/quality.md)."""
    height, width = result.original_size
    scores = {concept.label: {"score": concept.quality.score} for concept in result if concept.quality is not None}
    annotations = [
        {"category_id": category, "segmentation": segmentation_of(mask, segmentation, tolerance),
         "area": int(mask.sum()), "bbox": mask_bbox(mask), **scores.get(category, {})}
        for category, mask in annotation_pieces(result, instances, min_area)
    ]
    return {"file_name": file_name, "height": height, "width": width, "annotations": annotations}


def coco_instances(records: Iterable[dict], names: Sequence[str]) -> dict:
    """The COCO instances document of target records (`target_record`), categories 1.. named `names`."""
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": record["file_name"],
                       "height": record["height"], "width": record["width"]})
        for annotation in record["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **annotation, "iscrowd": 0})
    categories = [{"id": index, "name": name} for index, name in enumerate(names, start=1)]
    return {"info": {"description": "insid3-segment masks"}, "images": images,
            "annotations": annotations, "categories": categories}


class CocoOutputs:
    def __init__(self, folder: Path, options: OutputOptions) -> None:
        hold_folder(folder)  # before reading its journal: no other job may write there now
        self.folder, self.path, self.options = folder, folder / COCO_FILE, options
        self.segmentation = "rle" if options.format == "coco-rle" else options.segmentation
        self.journal = RecordJournal(folder, COCO_JOURNAL)

    def done(self, target: Path) -> bool:
        return target in self.journal

    def has_outputs(self) -> bool:
        return bool(self.journal.records) or self.path.is_file()

    def start(self, *, fresh: bool) -> None:
        """The categories come from the job's concepts when the file is built; another job's
        records (--overwrite) would point at its categories, so they are dropped."""
        if fresh:
            self.journal.forget()

    def write(self, target: Path, result: ConceptsResult) -> None:
        options = self.options
        self.journal.add(target, target_record(str(target), result, segmentation=self.segmentation,
                                               instances=options.instances, min_area=options.min_area,
                                               tolerance=options.tolerance))

    def coco(self) -> dict:
        return coco_instances(self.journal.records.values(), self.options.names)

    def close(self) -> None:
        """masks.coco.json from every record; the folder is let go (removed if this job made it
        and wrote no record there)."""
        try:
            self.journal.close()
            write_atomically(self.path, (json.dumps(self.coco()) + "\n").encode())
        finally:
            release_folder(self.folder, unused=not self.journal.added)
