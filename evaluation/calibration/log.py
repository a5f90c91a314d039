"""The calibration's episode log: insid3-eval's (evaluation/episode_log.py), one line per episode
holding every setting's counts and score in grid order, so an interrupted sweep resumes where it
stopped and replays the same float32 sums."""

from __future__ import annotations

from dataclasses import dataclass

from insid3.evaluation.calibration.sweep import Outcome
from insid3.evaluation.episode import Episode
from insid3.evaluation.episode_log import EpisodeLog
from insid3.evaluation.metrics import Counts

LOG_FILE = "calibration.episodes.jsonl"


@dataclass(frozen=True)
class SweptEpisode:
    """One episode under every setting: outcomes[i] belongs to the grid's i-th setting."""

    episode: Episode
    outcomes: tuple[Outcome, ...]
    note: str | None = None

    def to_json(self) -> dict:
        data = {
            **self.episode.to_json(),
            "counts": [[*o.counts.intersection, *o.counts.union] for o in self.outcomes],
            "scores": [o.score for o in self.outcomes],
        }
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def from_json(cls, data: dict) -> "SweptEpisode":
        counts, scores = data["counts"], data["scores"]
        if len(counts) != len(scores):
            raise ValueError("counts and scores differ in length")
        outcomes = tuple(
            Outcome(Counts(intersection=(int(c[0]), int(c[1])), union=(int(c[2]), int(c[3]))),
                    None if s is None else float(s))
            for c, s in zip(counts, scores)
        )
        return cls(Episode.from_json(data), outcomes, data.get("note"))

    @classmethod
    def of(cls, record: "SweptEpisode") -> "SweptEpisode":
        return record


class SweepLog(EpisodeLog):
    kind = "insid3 calibrate episode log"
    record = SweptEpisode
