"""How far to trust one concept's mask on one target: a `MaskQuality` record, from what the
pipeline computed anyway (no second backbone pass), and the flags a reviewer filters by.

    result = seg.segment_concepts(target, {"cat": cat})
    result["cat"].quality.score           # in [0, 1]: threshold it (--min-score)
    result.quality["cat"].components      # the same record, by name

The record (docs/quality.md says what each field means and why the score is what it is):
  seed_similarity  <p, q~_seed>: the seed cluster's unit mean debiased feature against the
                   reference prototype (doc §8's seed choice; None without a seed)
  seed_score       the seed's doc §8 score, cross_seed * intra_seed (a_seed = 1), and
  seed_margin      its margin above merge_threshold (float32, as §8 compares): < 0 empties the mask
  confirmed_share  of the forward patches (doc §6), the share the backward vote confirms
  area_fraction    the mask's foreground pixels over its pixels
  components       its 8-connected components (the instances of `ConceptsResult.instances`)
  score            max(0, seed_similarity) when the mask has a pixel, else 0

The seed numbers come from the aggregate (kernels.pruned_aggregate: its seed, and the seed's
score, which it always knows exactly); the confirmed share votes every forward patch (the pruned
aggregation votes only those that can change the mask), one (forward x Nr) GEMM per shot, charged
to the "aggregation" stage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from insid3 import kernels
from insid3.kernels.aggregation import cluster_prototypes, row_dots
from insid3.kernels.matching import backward_candidates, backward_votes

# 8-connected components: pixels touching by a corner belong to one instance.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
FLAGS = ("empty", "tiny", "huge", "fragmented", "low-score")


@dataclass(frozen=True)
class SeedEvidence:
    """The device half of a record, read where doc §6 and §8 ran (engine/runtime/decoding.py)."""

    seed_similarity: float | None
    seed_score: float | None
    seed_margin: float | None
    forward_patches: int
    confirmed_patches: int


@dataclass(frozen=True)
class MaskQuality:
    """One concept's mask on one target, judged (module docstring; docs/quality.md)."""

    score: float
    seed_similarity: float | None
    seed_score: float | None
    seed_margin: float | None
    confirmed_share: float
    forward_patches: int
    confirmed_patches: int
    area_fraction: float
    components: int

    def to_json(self) -> dict[str, Any]:
        """Plain numbers (None without a seed), in field order: what the server and the jobs write."""
        return asdict(self)


@dataclass(frozen=True)
class QualityThresholds:
    """When a mask is flagged (docs/quality.md): empty, no pixel; tiny, area fraction below
    `tiny`; huge, above `huge`; fragmented, more than `fragmented` components; low-score, score
    below `low_score`."""

    tiny: float = 0.001
    huge: float = 0.9
    fragmented: int = 5
    low_score: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.tiny <= self.huge <= 1:
            raise ValueError(f"quality thresholds need 0 <= tiny <= huge <= 1, got tiny={self.tiny}, huge={self.huge}")
        if self.fragmented < 1:
            raise ValueError(f"the fragmented threshold is a number of components >= 1, got {self.fragmented}")

    def flags(self, quality: MaskQuality) -> tuple[str, ...]:
        """The flags `quality` raises, in FLAGS order (an empty mask is only "empty" and "low-score")."""
        empty = quality.components == 0
        raised = {
            "empty": empty,
            "tiny": not empty and quality.area_fraction < self.tiny,
            "huge": quality.area_fraction > self.huge,
            "fragmented": quality.components > self.fragmented,
            "low-score": quality.score < self.low_score,
        }
        return tuple(flag for flag in FLAGS if raised[flag])


def quality_json(quality: MaskQuality, thresholds: QualityThresholds = QualityThresholds()) -> dict[str, Any]:
    """The record and its flags (by `thresholds`, the defaults unless given): what the server answers."""
    return {**quality.to_json(), "flags": list(thresholds.flags(quality))}


def no_seed(forward_patches: int = 0) -> SeedEvidence:
    """No candidate patch (doc §6): the mask is empty and nothing was confirmed."""
    return SeedEvidence(None, None, None, forward_patches, 0)


def seed_evidence(
    *, labels: Any, forward: Any, debiased: Any, reference: kernels.ReferenceSide, seed: int | None,
    seed_score: Any, merge_threshold: float,
) -> SeedEvidence:
    """The seed's similarity, score and margin, and the backward vote on every forward patch.
    labels: (N,) cluster ids; forward: (N,) bool; debiased: (N, D) target coordinates; seed and
    seed_score: the aggregate's (its score_low[seed], exact)."""
    xp = kernels.array_module(debiased)
    rows = xp.nonzero(forward)[0]
    if seed is None:
        return no_seed(int(rows.shape[0]))
    count = int(labels.max()) + 1
    prototype = cluster_prototypes(debiased, labels, xp.asarray([seed], dtype=xp.int64), count)
    similarity = row_dots(prototype, reference.prototype)[0]
    votes = backward_votes(debiased[rows], reference.debiased, reference.patch_masks)
    confirmed = backward_candidates(votes, int(reference.debiased.shape[0]))
    score = np.float32(kernels.to_numpy(seed_score))
    return SeedEvidence(
        seed_similarity=float(kernels.to_numpy(similarity)),
        seed_score=float(score),
        seed_margin=float(score - np.float32(merge_threshold)),  # float32, as §8 compares
        forward_patches=int(rows.shape[0]),
        confirmed_patches=int(confirmed.sum()),
    )


def mask_quality(evidence: SeedEvidence, mask: np.ndarray) -> MaskQuality:
    """The record of a finished (H, W) bool mask with its seed evidence."""
    area = int(np.count_nonzero(mask))
    components = count_components(mask) if area else 0
    similarity = evidence.seed_similarity
    score = min(1.0, max(0.0, similarity)) if area and similarity is not None else 0.0
    forward = evidence.forward_patches
    return MaskQuality(
        score=score,
        seed_similarity=similarity,
        seed_score=evidence.seed_score,
        seed_margin=evidence.seed_margin,
        confirmed_share=evidence.confirmed_patches / forward if forward else 0.0,
        forward_patches=forward,
        confirmed_patches=evidence.confirmed_patches,
        area_fraction=area / mask.size if mask.size else 0.0,
        components=components,
    )


def count_components(mask: np.ndarray) -> int:
    """8-connected components of a bool mask, labelled on its bounding box only (a mask is often
    a small part of a large photo)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return int(ndimage.label(box, structure=EIGHT_CONNECTED)[1])
