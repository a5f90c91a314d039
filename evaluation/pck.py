"""PCK, the Percentage of Correct Keypoints, scored per pair and averaged over all pairs, as the
authors' evaluation of SPair-71k does (docs/correspondence.md, "PCK").

A match is correct when its float32 distance to the true keypoint is at most alpha * threshold
(the threshold: the target box's longer side; the bound rounded to float32, inclusive). Each
pair scores the fraction of its keypoints that are correct; the reported PCK@alpha is the mean
of those fractions over every pair: pairs count equally whatever their keypoint count, and
categories by their pair counts. Per-category figures are the same mean within a category.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ALPHAS = (0.05, 0.1, 0.15, 0.2)
TABLE_CELL = 12  # per_class_score.txt: every cell left-justified to this width, as the authors'


def pair_pck(predicted: np.ndarray, truth: np.ndarray, threshold: float, points: int) -> dict[float, float]:
    """{alpha: fraction of the first `points` keypoints within alpha * threshold}, each fraction
    a float32 mean (the authors' `.float().mean()`)."""
    difference = np.asarray(truth, np.float32)[:points] - np.asarray(predicted, np.float32)[:points]
    distance = np.sqrt(np.sum(difference * difference, axis=-1, dtype=np.float32))  # (K,) float32
    return {
        alpha: float(np.mean(distance <= np.float32(alpha * float(threshold)), dtype=np.float32)) for alpha in ALPHAS
    }


@dataclass
class PckMeter:
    """Per-pair PCK values, kept per alpha for all pairs and per category."""

    values: dict[float, dict[str, list[float]]] = field(default_factory=lambda: {a: {"all": []} for a in ALPHAS})

    def add(self, category: str, scores: dict[float, float]) -> None:
        for alpha in ALPHAS:
            self.values[alpha]["all"].append(scores[alpha])
            self.values[alpha].setdefault(category, []).append(scores[alpha])

    @property
    def pairs(self) -> int:
        return len(self.values[ALPHAS[0]]["all"])

    def means(self) -> dict[str, dict[float, float]]:
        """{"all" or a category: {alpha: mean per-pair PCK in [0, 1]}} (float64 means, as np.mean)."""
        groups = self.values[ALPHAS[0]].keys()
        return {g: {a: float(np.mean(self.values[a][g])) if self.values[a][g] else 0.0 for a in ALPHAS} for g in groups}


def summary_line(means: dict[str, dict[float, float]]) -> str:
    """The authors' last line: PCK@0.05 = xx.xx, PCK@0.10 = ..., PCK@0.15 = ..., PCK@0.20 = ..."""
    return ", ".join(f"PCK@{alpha:.2f} = {means['all'][alpha] * 100:.2f}" for alpha in ALPHAS)


def per_class_table(means: dict[str, dict[float, float]]) -> str:
    """per_class_score.txt as the authors lay it out: the categories in alphabetical order and
    `all` across, one row per alpha of xx.xx% cells, then a dashed line."""
    categories = sorted(c for c in means if c != "all") + ["all"]
    lines = ["", " " * TABLE_CELL + "".join(f"{c:<{TABLE_CELL}}" for c in categories)]
    for alpha in ALPHAS:
        lines.append(f"{alpha:<{TABLE_CELL}}" + "".join(f"{means[c][alpha]:<{TABLE_CELL}.2%}" for c in categories))
    return "\n".join(lines) + "\n" + "-" * 65 + "\n"


def read_per_class_table(path: Path) -> dict[str, dict[float, float]]:
    """per_class_score.txt back into {category or "all": {alpha: PCK in [0, 1]}} (2 decimals of %)."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("---")]
    categories = lines[0].split()
    table: dict[str, dict[float, float]] = {c: {} for c in categories}
    for line in lines[1:]:
        alpha, *cells = line.split()
        for category, cell in zip(categories, cells):
            table[category][float(alpha)] = float(cell.rstrip("%")) / 100
    return table
