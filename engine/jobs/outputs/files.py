"""What every writer shares: encoding an image in memory, atomic writes, leftovers, the log of
targets this job finished (or, for a format written as one document, the journal of their
records), and what names a target in them.

A target is named by its real path (symbolic links resolved) relative to the output folder's
real path: `photos/a.jpg` typed in the project folder, `/home/me/project/photos/a.jpg` typed
anywhere else and a link to it are the same target, `../photos/a.jpg` for a folder `masks/`
beside `photos/`. Moving the images and the output folder together (a project copied to
another disk) keeps every target done; moving or renaming one of them makes the targets new ones
(redone, or for COCO recorded beside the old records: docs/jobs.md).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path, PurePath

import numpy as np
from PIL import Image

from insid3.engine.jobs.job_folder import append_line, hold_folder, open_for_append, write_atomically

__all__ = ["DoneLog", "RecordJournal", "encoded", "mask_bbox", "remove_temporaries", "target_key", "write_atomically"]

DONE_FILE = ".insid3-done"


def encoded(image: Image.Image, **options) -> bytes:
    """The image's file bytes (PIL `save` options: format=..., quality=...)."""
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def target_key(target: PurePath | object, folder: Path) -> str:
    """What names `target` in a job's log: its real path relative to the output folder's (a URI,
    with --ray, as it is: it has no other spelling)."""
    if not isinstance(target, PurePath):
        return str(target)
    real = os.path.realpath(target)
    try:
        return os.path.relpath(real, os.path.realpath(folder))
    except ValueError:  # another drive (Windows): no relative path
        return real


def remove_temporaries(folder: Path) -> None:
    """Temporary files an interrupted run left behind (never mistaken for outputs). Only the job
    holding the folder may remove them (another running job's are not leftovers): this holds it."""
    hold_folder(folder)
    for leftover in folder.rglob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO's [x, y, width, height] of the mask's pixels; zeros for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


class DoneLog:
    """The targets whose files this job wrote, one per line, appended as each is finished.

    A file in the folder counts as done only when this log names its target, so the files of
    another job that --overwrite took the folder from are redone, never trusted by a resume.
    Targets are named by `target_key`. A torn last line (a crash mid-append) is dropped: that
    target is redone. The log is created with its first line.
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = folder, folder / DONE_FILE
        self.targets: set[str] = set()
        self.added = 0  # targets this job finished
        self._log: int | None = None
        if self.path.is_file():
            lines = self.path.read_bytes().split(b"\n")
            complete = lines[:-1]  # the part after the last newline is empty or torn
            self.targets = {line.decode("utf-8", "replace") for line in complete}
            os.truncate(self.path, sum(len(line) + 1 for line in complete))

    def __contains__(self, target: Path) -> bool:
        return target_key(target, self.folder) in self.targets

    def forget(self) -> None:
        self.targets.clear()
        if self.path.is_file():
            os.truncate(self.path, 0)

    def add(self, target: Path) -> None:
        key = target_key(target, self.folder)
        if self._log is None:
            self._log = open_for_append(self.path)
        append_line(self._log, self.path, f"{key}\n".encode())
        self.targets.add(key)
        self.added += 1

    def close(self) -> None:
        if self._log is not None:
            os.close(self._log)
            self._log = None


class RecordJournal:
    """Each finished target's record (a JSON object), one line per target appended and flushed as
    soon as it is computed, for the formats written as one document when the job ends (COCO,
    Label Studio). The journal line adds `target` (its `target_key`); `records` holds the records
    without it, by key: a target written again keeps its first place with its latest record. A
    torn last line (a crash mid-append) and anything after it are dropped: those targets are redone.
    """

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.path = folder, folder / name
        self.records: dict[str, dict] = {}
        self.added = 0  # records this job wrote
        self._journal: int | None = None
        if self.path.is_file():
            good_bytes = 0
            with open(self.path, "rb") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        break
                    self.records[record.pop("target")] = record
                    good_bytes += len(line)
            os.truncate(self.path, good_bytes)

    def __contains__(self, target: Path) -> bool:
        return target_key(target, self.folder) in self.records

    def forget(self) -> None:
        self.records.clear()
        if self.path.is_file():
            os.truncate(self.path, 0)

    def add(self, target: Path, record: dict) -> None:
        key = target_key(target, self.folder)
        if self._journal is None:
            self._journal = open_for_append(self.path)
        append_line(self._journal, self.path, (json.dumps({**record, "target": key}) + "\n").encode())
        self.records[key] = record
        self.added += 1

    def close(self) -> None:
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
