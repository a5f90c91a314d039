"""What the logged episodes say about each setting, and which setting to recommend.

Per setting: mIoU and FB-IoU over the concepts (evaluation/metrics.py's IoUMeter, updated in
episode order as insid3-eval does, negatives included: their right answer is the empty mask, so
a false positive adds to the concept's union), per-concept IoU, the distribution of per-episode
foreground IoU on positives, and the false-positive rate on negatives (a mask with any pixel).
The recommended setting is the argmax of mIoU (ties: the defaults, then grid order); its gain over
the defaults comes with a percentile bootstrap interval over episodes (resampled with replacement,
both settings scored on each resample). The score threshold S is the one that best separates
positives from negatives at the recommended setting (fewest false positives + misses, in rates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from insid3.evaluation.calibration.episodes import is_negative
from insid3.evaluation.calibration.log import SweptEpisode
from insid3.evaluation.calibration.sweep import Setting
from insid3.evaluation.metrics import IoUMeter
from insid3.format.profile import ScoreThreshold

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
HISTOGRAM_BINS = 10


@dataclass(frozen=True)
class SettingResult:
    setting: Setting
    miou: float
    fb_iou: float
    per_concept: dict[str, float]  # foreground IoU, in percent
    per_concept_fb_iou: dict[str, float]  # mean of the background and foreground IoU, in percent
    iou_quantiles: dict[str, float]  # per-episode foreground IoU on positives, in percent
    iou_histogram: list[int]  # positives per tenth of IoU (the last bin holds 1.0)
    false_positive_rate: float | None  # None without negatives

    def to_json(self) -> dict:
        return {**self.setting.to_json(), "miou": self.miou, "fb_iou": self.fb_iou, "per_concept": self.per_concept,
                "per_concept_fb_iou": self.per_concept_fb_iou,
                "iou_quantiles": self.iou_quantiles, "iou_histogram": self.iou_histogram,
                "false_positive_rate": self.false_positive_rate}


def meter_of(records: Sequence[SweptEpisode], index: int, class_ids: Sequence[int]) -> IoUMeter:
    """Setting `index`'s meter: its counts added in episode order, as insid3-eval's."""
    meter = IoUMeter(class_ids, len(class_ids))
    for record in records:
        meter.update(record.outcomes[index].counts, record.episode.class_id)
    return meter


def episode_ious(records: Sequence[SweptEpisode], index: int) -> np.ndarray:
    """(E,) foreground IoU per episode (float64; 0/0 -> 1: an empty mask on a negative is right)."""
    inter = np.array([r.outcomes[index].counts.intersection[1] for r in records], dtype=np.float64)
    union = np.array([r.outcomes[index].counts.union[1] for r in records], dtype=np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def setting_result(records: Sequence[SweptEpisode], index: int, setting: Setting, names: Sequence[str]) -> SettingResult:
    meter = meter_of(records, index, range(len(names)))
    negative = np.array([is_negative(r.episode) for r in records], dtype=bool)
    ious = episode_ious(records, index)[~negative] if records else np.zeros(0)
    predicted = np.array([r.outcomes[index].counts.union[1] > 0 for r in records], dtype=bool)  # gt empty: union = mask
    quantiles = {f"p{round(q * 100)}": float(np.quantile(ious, q) * 100) for q in QUANTILES} if ious.size else {}
    histogram = np.histogram(ious, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0].tolist() if ious.size else []
    return SettingResult(
        setting=setting, miou=meter.miou(), fb_iou=meter.fb_iou(),
        per_concept={names[row["class_id"]]: row["iou"] for row in meter.per_class()},
        per_concept_fb_iou={name: float(both.mean(dtype=np.float32) * np.float32(100))
                            for name, both in zip(names, meter.iou().T)},
        iou_quantiles=quantiles, iou_histogram=histogram,
        false_positive_rate=float(predicted[negative].mean()) if negative.any() else None,
    )


def recommend(results: Sequence[SettingResult], default: Setting) -> SettingResult:
    """The argmax of mIoU; on a tie the defaults, then the first in grid order."""
    best = max(r.miou for r in results)
    tied = [r for r in results if r.miou == best]
    return next((r for r in tied if r.setting == default), tied[0])


@dataclass(frozen=True)
class Gain:
    miou: float  # recommended - defaults, in mIoU points
    low: float  # the bootstrap interval's bounds
    high: float
    level: float
    resamples: int

    def to_json(self) -> dict:
        return {"miou": self.miou, "low": self.low, "high": self.high, "level": self.level, "resamples": self.resamples}


def _bootstrap_miou(counts: np.ndarray, classes: np.ndarray, picks: np.ndarray, num_classes: int) -> np.ndarray:
    """(B,) mIoU of each resample: counts (E, 2) [intersection, union] of the foreground bin."""
    values = np.empty(len(picks))
    for b, pick in enumerate(picks):
        inter = np.bincount(classes[pick], weights=counts[pick, 0], minlength=num_classes)
        union = np.bincount(classes[pick], weights=counts[pick, 1], minlength=num_classes)
        values[b] = 100 * np.mean(inter / np.maximum(union, 1))
    return values


def bootstrap_gain(records: Sequence[SweptEpisode], best: SettingResult, best_index: int, default: SettingResult,
                   default_index: int, num_classes: int, *, resamples: int = 1000, level: float = 0.95,
                   seed: int = 0) -> Gain:
    """Percentile interval of mIoU(best) - mIoU(default) over episodes resampled with replacement."""
    classes = np.array([r.episode.class_id for r in records], dtype=np.int64)
    count = len(records)
    picks = np.random.default_rng(seed).integers(0, count, size=(resamples, count)) if count else np.zeros((0, 0), int)

    def fg(index: int) -> np.ndarray:
        return np.array([[r.outcomes[index].counts.intersection[1], r.outcomes[index].counts.union[1]]
                         for r in records], dtype=np.float64).reshape(count, 2)

    diffs = _bootstrap_miou(fg(best_index), classes, picks, num_classes) - \
        _bootstrap_miou(fg(default_index), classes, picks, num_classes)
    tail = (1 - level) / 2
    low, high = (np.quantile(diffs, [tail, 1 - tail]) if diffs.size else (math.nan, math.nan))
    return Gain(miou=best.miou - default.miou, low=float(low), high=float(high), level=level, resamples=resamples)


@dataclass(frozen=True)
class ScoreSeparation:
    """The proposed threshold, or why there is none."""

    threshold: ScoreThreshold | None
    why: str
    positives: int
    negatives: int

    def to_json(self) -> dict:
        return {"threshold": None if self.threshold is None else self.threshold.to_json(), "why": self.why,
                "positives": self.positives, "negatives": self.negatives}


def propose_min_score(records: Sequence[SweptEpisode], index: int, score_name: str) -> ScoreSeparation:
    """S minimising false-positive rate + miss rate at setting `index`: a target is judged to
    show the concept when its mask has a pixel and its score is >= S. Ties: the lowest S."""
    negative = np.array([is_negative(r.episode) for r in records], dtype=bool)
    scores = np.array([-np.inf if r.outcomes[index].score is None else r.outcomes[index].score for r in records])
    positives, negatives = int((~negative).sum()), int(negative.sum())
    if not negatives or not positives:
        return ScoreSeparation(None, "no negatives to separate from" if not negatives else "no positives",
                               positives, negatives)
    finite = np.unique(scores[np.isfinite(scores)])
    if not finite.size:
        return ScoreSeparation(None, "every mask is empty at this setting", positives, negatives)
    # Every threshold between two observed scores, and one above them all (everything absent).
    candidates = [finite[0], *((finite[:-1] + finite[1:]) / 2), finite[-1] + 1e-6]
    best = None
    for threshold in candidates:
        present = np.isfinite(scores) & (scores >= threshold)  # an empty mask is absent whatever S
        false_positive = float(present[negative].mean())
        miss = float((~present[~negative]).mean())
        if best is None or false_positive + miss < best[1] + best[2]:
            best = (float(threshold), false_positive, miss)
    threshold, false_positive, miss = best
    chosen = ScoreThreshold(threshold=threshold, score=score_name,
                            false_positive_rate=false_positive, miss_rate=miss)
    return ScoreSeparation(chosen, f"fewest false positives + misses over {positives} positives and "
                                   f"{negatives} negatives", positives, negatives)
