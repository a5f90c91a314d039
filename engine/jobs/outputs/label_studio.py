"""`--format label-studio`: pre-annotations Label Studio imports as they are, tasks.label-studio.json.

    [{"data": {"image": "<--label-studio-root><target path>"},
      "predictions": [{"model_version": "insid3", "score": <the task's lowest concept score>,
                       "result": [<one brushlabels item per concept with a mask (Label Studio's RLE,
                                   label-studio-sdk's encoder), or polygonlabels items with
                                   --segmentation polygon>]}]}, ...]

Each result carries its concept's score (engine/jobs/label_studio.py: concept_score). The result
items name the control "label" on the image "image", the config docs/label-studio.md shows.
The image reference is --label-studio-root followed by the target's path as given (a path
outside the current folder: its name): the default, /data/local-files/?d=, is Label Studio's
local storage, with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT the folder the job ran in; a URL
prefix (https://bucket.example/photos/) or a cloud storage's (s3://bucket/) works the same way.

Journalled like COCO (coco.py): each target's task is appended to tasks.label-studio.parts.jsonl
as soon as it is computed, and tasks.label-studio.json is rebuilt from it when the run ends.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath

from insid3.engine.jobs.job_folder import hold_folder, release_folder
from insid3.engine.jobs.label_studio import BRUSH, POLYGON, concept_score, default_config, mask_results
from insid3.engine.jobs.outputs.files import RecordJournal, write_atomically
from insid3.engine.jobs.outputs.options import OutputOptions
from insid3.engine.runtime.concepts import ConceptsResult

TASKS_FILE = "tasks.label-studio.json"
TASKS_JOURNAL = "tasks.label-studio.parts.jsonl"
DEFAULT_ROOT = "/data/local-files/?d="
MODEL_VERSION = "insid3"


def image_reference(target: PurePath | object, root: str) -> str:
    """`root` + the target's path as given, relative to the current folder (a path outside it:
    its name; a URI target: as it is)."""
    if not isinstance(target, PurePath):
        return str(target)
    path = Path(target)
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            path = Path(path.name)
    return root + path.as_posix()


def task_record(reference: str, result: ConceptsResult, segmentation: str = "rle", tolerance: float = 1.0) -> dict:
    """One Label Studio task: the image reference and one prediction of every concept's mask."""
    config = default_config(result.names, POLYGON if segmentation == "polygon" else BRUSH)
    items, scores = [], []
    for concept in result:
        score = concept_score(concept)
        found = mask_results(concept.mask, concept.name, config, score, tolerance)
        items.extend(found)
        scores.extend([score] if found else [])
    prediction = {"model_version": MODEL_VERSION, "score": min(scores) if scores else 0.0, "result": items}
    return {"data": {config.image_key: reference}, "predictions": [prediction]}


class LabelStudioOutputs:
    def __init__(self, folder: Path, options: OutputOptions) -> None:
        hold_folder(folder)  # before reading its journal: no other job may write there now
        self.folder, self.options = folder, options
        self.path, self.journal = folder / TASKS_FILE, RecordJournal(folder, TASKS_JOURNAL)
        self.root = options.label_studio_root

    def done(self, target: Path) -> bool:
        return target in self.journal

    def has_outputs(self) -> bool:
        return bool(self.journal.records) or self.path.is_file()

    def start(self, *, fresh: bool) -> None:
        if fresh:
            self.journal.forget()

    def write(self, target: Path, result: ConceptsResult) -> None:
        self.journal.add(target, task_record(image_reference(target, self.root), result, self.options.segmentation,
                                             self.options.tolerance))

    def close(self) -> None:
        """tasks.label-studio.json from every record; the folder is let go."""
        try:
            self.journal.close()
            write_atomically(self.path, (json.dumps(list(self.journal.records.values())) + "\n").encode())
        finally:
            release_folder(self.folder, unused=not self.journal.added)
