"""quality.csv: beside every format's outputs, one row per target and concept, its quality record
(engine/runtime/quality.py) and the flags a reviewer filters by (docs/quality.md).

    target          the target as the job's log names it: its path relative to the output
                    folder (files.target_key), a URI as given
    concept         the concept's name (--category for --ref)
    score ... components   the MaskQuality record, in its field order (empty: no seed)
    empty tiny huge fragmented low_score   1 where the flag is raised (QualityThresholds)
    absent          1 where --min-score judged the concept absent and wrote an empty mask

`with_quality` wraps the format's writer: a result below --min-score is emptied before the
format writes it, then its rows are appended to quality.csv in one write and flushed; a target
is done only when the format says so and quality.csv holds all its rows. A torn last line (a
crash mid-append) is dropped on resume and its target redone. When the job ends, however it ends,
quality.csv is rewritten once, a row per target and concept (a target redone keeps its place),
its flags recomputed with this run's thresholds (flags never change a mask: they are not part
of the job's identity).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Any

from insid3.engine.jobs.job_folder import append_line, open_for_append, write_atomically
from insid3.engine.jobs.outputs.files import target_key
from insid3.engine.jobs.outputs.options import OutputOptions, Writer
from insid3.engine.runtime.concepts import ConceptsResult
from insid3.engine.runtime.quality import FLAGS, MaskQuality, QualityThresholds

QUALITY_FILE = "quality.csv"
RECORD = tuple(field.name for field in dataclasses.fields(MaskQuality))
FLAG_COLUMNS = tuple(flag.replace("-", "_") for flag in FLAGS)
COLUMNS = ("target", "concept", *RECORD, *FLAG_COLUMNS, "absent")
_INTEGERS = {field.name for field in dataclasses.fields(MaskQuality) if field.type in ("int", int)}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def row_of(key: str, concept: str, quality: MaskQuality, thresholds: QualityThresholds, absent: bool) -> list[str]:
    raised = set(thresholds.flags(quality))
    record = [_cell(getattr(quality, name)) for name in RECORD]
    return [key, concept, *record, *(_cell(flag in raised) for flag in FLAGS), _cell(absent)]


def quality_of_row(row: dict[str, str]) -> MaskQuality:
    """The record a quality.csv row holds (as written: the same floats, repr round-trips)."""
    def value(name: str) -> Any:
        text = row[name]
        if text == "":
            return None
        return int(text) if name in _INTEGERS else float(text)

    return MaskQuality(**{name: value(name) for name in RECORD})


def _lines(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


class QualityLog:
    """quality.csv's rows by target key, appended as targets finish (module docstring)."""

    def __init__(self, folder: Path, names: tuple[str, ...], thresholds: QualityThresholds) -> None:
        self.folder, self.path, self.names, self.thresholds = folder, folder / QUALITY_FILE, names, thresholds
        self.rows: dict[str, list[list[str]]] = self._read()
        self._handle: int | None = None

    def _read(self) -> dict[str, list[list[str]]]:
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # after the last newline: empty, or a torn line
        os.truncate(self.path, len(complete))
        found: dict[str, list[list[str]]] = {}
        lines = csv.reader(io.StringIO(complete.decode("utf-8", "replace")))
        if next(lines, None) != list(COLUMNS):
            os.truncate(self.path, 0)  # not this version's file: every target is redone
            return {}
        for row in lines:
            if len(row) == len(COLUMNS):
                found.setdefault(row[0], []).append(row)
        return found

    def done(self, target: Path) -> bool:
        """Every concept of the target has its row (a crash mid-write leaves fewer)."""
        rows = self.rows.get(target_key(target, self.folder), [])
        return [row[1] for row in rows] == list(self.names)

    def forget(self) -> None:
        self.rows.clear()
        if self.path.is_file():
            os.truncate(self.path, 0)

    def add(self, target: Path, result: ConceptsResult, absent: set[str]) -> None:
        key = target_key(target, self.folder)
        rows = [row_of(key, concept.name, concept.quality, self.thresholds, concept.name in absent)
                for concept in result if concept.quality is not None]
        if self._handle is None:
            fresh = not self.path.is_file() or self.path.stat().st_size == 0
            self._handle = open_for_append(self.path)
            if fresh:
                append_line(self._handle, self.path, _lines([list(COLUMNS)]))
        append_line(self._handle, self.path, _lines(rows))
        self.rows[key] = rows  # a target redone keeps its place

    def close(self) -> None:
        """quality.csv rewritten: one row per target and concept, flags by this run's thresholds."""
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None
        if not self.rows:
            return
        table = [list(COLUMNS)]
        for rows in self.rows.values():
            for row in rows:
                quality = quality_of_row(dict(zip(COLUMNS, row)))
                table.append(row_of(row[0], row[1], quality, self.thresholds, row[-1] == "1"))
        write_atomically(self.path, _lines(table))


class WithQuality:
    """A format's writer that also keeps quality.csv, and empties the masks below --min-score."""

    def __init__(self, inner: Writer, folder: Path, options: OutputOptions) -> None:
        self.inner, self.min_score = inner, options.min_score
        self.log = QualityLog(folder, options.names, options.quality)

    def done(self, target: Path) -> bool:
        return self.inner.done(target) and self.log.done(target)

    def has_outputs(self) -> bool:
        return self.inner.has_outputs()

    def start(self, *, fresh: bool) -> None:
        if fresh:
            self.log.forget()
        self.inner.start(fresh=fresh)

    def write(self, target: Path, result: ConceptsResult) -> None:
        absent: set[str] = set()
        if self.min_score is not None:
            absent = {c.name for c in result if c.quality is not None and c.quality.score < self.min_score}
            result = result.above(self.min_score)
        self.inner.write(target, result)
        self.log.add(target, result, absent)

    def close(self) -> None:
        try:
            self.log.close()
        finally:
            self.inner.close()  # last: it lets the folder go
