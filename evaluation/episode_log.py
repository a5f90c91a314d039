"""The episode log: what makes a day-long evaluation resumable.

One JSON Lines file per run (dataset, fold, shots) in the output folder. The first line says
what run it belongs to (the dataset, fold, shots, protocol and seed, the bundle's model and
basis digests, the hyperparameters, the backend and precision); every further line is one
finished episode: its index, class, target and references (the files read) and its two-bin
intersection and union. Lines are appended and flushed as episodes finish, in episode order, so
a crash leaves at most one torn last line, which reading drops. Resuming replays the logged
counts into the meter in order, which gives the very float32 sums of an uninterrupted run.

Opening a log holds its folder for this process (engine/jobs/job_folder.py: a second job on the
same folder stops at once; the tool lets it go when it ends). A write that fails (a full disk)
leaves the log as it was, cut back to its last whole line, and raises one OutputWriteError line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from insid3.engine.jobs.job_folder import append_line, hold_folder, open_for_append, output_error
from insid3.errors import Insid3Error
from insid3.evaluation.episode import Episode
from insid3.evaluation.metrics import Counts
from insid3.evaluation.runner import EpisodeResult

KIND = "insid3-eval episode log"
VERSION = 1


class EpisodeLogError(Insid3Error):
    """The output folder's log belongs to another run, or does not match the dataset any more."""


@dataclass(frozen=True)
class LoggedEpisode:
    episode: Episode
    counts: Counts
    note: str | None = None

    def to_json(self) -> dict:
        data = {**self.episode.to_json(), **self.counts.to_json()}
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def from_json(cls, data: dict) -> "LoggedEpisode":
        return cls(Episode.from_json(data), Counts.from_json(data), data.get("note"))

    @classmethod
    def of(cls, result: EpisodeResult) -> "LoggedEpisode":
        return cls(result.episode, result.counts, result.note)


def _differences(found: dict, expected: dict) -> list[str]:
    keys = sorted(set(found) | set(expected))
    return [f"{k}: {found.get(k)!r} -> {expected.get(k)!r}" for k in keys if found.get(k) != expected.get(k)]


class EpisodeLog:
    """Read the finished episodes of `path` (checking it is this run's), then append new ones.
    A log of other records (insid3 calibrate's) names its own `kind` and `record` type."""

    kind = KIND
    record: type = LoggedEpisode

    def __init__(self, path: str | Path, run: dict, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.run = json.loads(json.dumps(run))  # as it reads back
        self.done: list = []
        hold_folder(self.path.parent)  # made if missing; FolderBusyError while another job holds it
        if self.path.exists() and not overwrite:
            self._read()
        else:
            self._rewrite([])
        self._handle = open_for_append(self.path)

    def _read(self) -> None:
        # Every record is written with its newline in one write: what follows the last newline
        # is a record torn by a crash, and is dropped.
        complete = self.path.read_text(encoding="utf-8").split("\n")[:-1]
        try:
            header = json.loads(complete[0]) if complete else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("kind") != self.kind:
            raise EpisodeLogError(f"{self.path} is not an {self.kind}: remove it or pass --overwrite")
        if header.get("version") != VERSION or header.get("run") != self.run:
            changed = _differences(header.get("run") or {}, self.run)
            raise EpisodeLogError(
                f"{self.path} belongs to another run ({'; '.join(changed[:4]) or 'another log version'}): "
                "pass --overwrite to start again, or another --out"
            )
        for number, line in enumerate(complete[1:], 2):
            try:
                logged = self.record.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError, IndexError):
                raise EpisodeLogError(
                    f"{self.path} line {number} is not an episode record: remove the file or pass --overwrite"
                ) from None
            if logged.episode.index != len(self.done):
                raise EpisodeLogError(f"{self.path} line {number}: episode {logged.episode.index}, expected {len(self.done)}")
            self.done.append(logged)
        self._rewrite(self.done)  # without any torn tail, before appending

    def _rewrite(self, done: list) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(json.dumps({"kind": self.kind, "version": VERSION, "run": self.run}) + "\n")
                for logged in done:
                    handle.write(json.dumps(logged.to_json()) + "\n")
            os.replace(temporary, self.path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise output_error(exc, self.path, None) from None

    def check_same_episode(self, logged, episode: Episode) -> None:
        """The dataset must still draw what was logged: else the counts would mix two datasets."""
        if logged.episode != episode:
            raise EpisodeLogError(
                f"{self.path}: episode {episode.index} was {logged.episode.to_json()} when logged but the dataset "
                f"now gives {episode.to_json()}: the data changed; pass --overwrite to start again"
            )

    def append(self, result):
        """Log `result` (an EpisodeResult, or what `record.of` takes) and return its record."""
        logged = self.record.of(result)
        append_line(self._handle, self.path, (json.dumps(logged.to_json()) + "\n").encode(), sync=False)
        self.done.append(logged)
        return logged

    def close(self) -> None:
        if self._handle >= 0:
            os.close(self._handle)
            self._handle = -1
