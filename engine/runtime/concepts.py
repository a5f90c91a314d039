"""Several concepts on one target in one pass: per-concept masks, their scores, a label map and
instances (`Segmenter.segment_concepts`).

    cat, dog = seg.encode_reference([(cat_img, cat_mask)]), seg.encode_reference([(dog_img, dog_mask)])
    result = seg.segment_concepts(target, {"cat": cat, "dog": dog})
    result["cat"].mask            # bool (H, W): bit for bit seg.segment(target, cat)
    result.label_map()            # uint8 (H, W): 0 background, 1 cat, 2 dog (uint16 past 255 concepts)
    result.instances(min_area=50) # connected components of each concept's mask
    result["cat"].quality.score   # how far to trust it (engine/runtime/quality.py, docs/quality.md)

The target goes through the backbone once, is debiased once and clustered once (engine/runtime/decoding.py);
each concept then costs its forward matching, its pruned aggregation and its upsampling (and,
with refine='crf', its CRF refinement).

Scores. Each concept scores every cluster of the target as doc §8 does (cross * intra * area
weight; the seed's weight is 1). The pruned aggregation computes a score exactly only where its
decision needs it, so `ConceptMask.score_low/score_high` give a range that holds the score,
a single value where it is exact (kernels/pruned_scores.py).

Label map. A pixel is labelled with a concept whose mask holds it. Where several masks hold it,
the pixel goes to the concept that scores the pixel's cluster highest (the cluster of the patch
under the pixel's centre), counting only concepts for which that cluster is foreground: at
patch level two concepts overlap exactly on clusters both keep, and those scores are made exact
(kernels.exact_cluster_scores) before they are compared. A concept whose mask reaches a pixel
only through the upsampling, its cluster there not being foreground, loses to one whose
cluster is. Ties (equal scores, or neither foreground) go to the concept listed first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from insid3 import kernels
from insid3.engine.runtime.decoding import ConceptDecode, ConceptDecoder, EncodedTarget
from insid3.engine.runtime.quality import EIGHT_CONNECTED, MaskQuality, mask_quality
from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.timing import StageClock

PER_CONCEPT_STAGES = ("matching", "aggregation", "upsample", "refine")  # refine: 0 ms unless the CRF is on


@dataclass(frozen=True, eq=False)
class ConceptMask:
    """One concept on one target. mask: bool (H, W); patch_mask: bool (N,) (doc §8, row-major on
    the patch grid); clusters: bool (K,), the clusters it keeps; seed: its seed cluster (None: no
    candidate, an empty mask); score_low, score_high: (K,) float32 around each cluster's §8 score
    (module docstring; all 0 without a candidate); timings_ms: this concept's own stages;
    quality: how far to trust the mask (engine/runtime/quality.py). K = 0 when the target was
    never clustered (no concept had a forward candidate)."""

    name: str
    label: int
    mask: np.ndarray
    patch_mask: np.ndarray
    clusters: np.ndarray
    seed: int | None
    score_low: np.ndarray
    score_high: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    quality: MaskQuality | None = None

    def emptied(self) -> "ConceptMask":
        """This concept judged absent: an empty mask that keeps no cluster (its quality record,
        measured on the mask it had, stays)."""
        return replace(self, mask=np.zeros_like(self.mask), patch_mask=np.zeros_like(self.patch_mask),
                       clusters=np.zeros_like(self.clusters))

    @property
    def exact(self) -> np.ndarray:
        """(K,) bool: where score_low == score_high is the score itself."""
        return self.score_low == self.score_high


@dataclass(frozen=True, eq=False)
class Instance:
    """One connected component of a concept's mask: bool (H, W) mask, COCO's bbox
    (x, y, width, height) in pixels and area (pixel count)."""

    concept: str
    label: int
    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    area: int


@dataclass(frozen=True, eq=False)
class ConceptsResult:
    """Every concept's mask on one target, in the order the concepts were given (label i + 1 is
    concepts[i]). labels: the target's (N,) cluster ids (None when no concept had a forward
    candidate: then every mask is empty and the target was not clustered)."""

    concepts: tuple[ConceptMask, ...]
    labels: np.ndarray | None
    patch_grid: tuple[int, int]
    original_size: tuple[int, int]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(concept.name for concept in self.concepts)

    @property
    def masks(self) -> dict[str, np.ndarray]:
        return {concept.name: concept.mask for concept in self.concepts}

    @property
    def quality(self) -> dict[str, MaskQuality | None]:
        """Each concept's quality record, by name."""
        return {concept.name: concept.quality for concept in self.concepts}

    def above(self, min_score: float) -> "ConceptsResult":
        """This result with every concept whose score is below `min_score` judged absent (its
        mask emptied, its record kept): what `--min-score` writes."""
        kept = tuple(
            concept if concept.quality is None or concept.quality.score >= min_score else concept.emptied()
            for concept in self.concepts
        )
        return replace(self, concepts=kept)

    def __getitem__(self, name: str) -> ConceptMask:
        for concept in self.concepts:
            if concept.name == name:
                return concept
        raise KeyError(f"no concept named {name!r}; the concepts are {', '.join(self.names)}")

    def __iter__(self) -> Iterator[ConceptMask]:
        return iter(self.concepts)

    def __len__(self) -> int:
        return len(self.concepts)

    def label_map(self) -> np.ndarray:
        """(H, W) uint8 (uint16 past 255 concepts): 0 background, i the i-th concept; overlaps
        resolved by the higher score of the pixel's cluster, ties to the first listed (module
        docstring)."""
        dtype = np.uint8 if len(self.concepts) <= np.iinfo(np.uint8).max else np.uint16
        height, width = self.original_size
        label = np.zeros((height, width), dtype=dtype)
        if self.labels is None:
            return label
        cluster_of_pixel = pixel_clusters(self.labels, self.patch_grid, self.original_size)
        best = np.full((height, width), -np.inf, dtype=np.float32)
        for concept in self.concepts:
            key = overlap_keys(concept)[cluster_of_pixel]
            take = concept.mask & ((label == 0) | (key > best))
            label[take], best[take] = concept.label, key[take]
        return label

    def instances(self, min_area: int = 0) -> list[Instance]:
        """Each concept's mask split into its 8-connected components at the target's size, those of
        at least `min_area` pixels, concept by concept (in raster order of their first pixel)."""
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {min_area}")
        found = []
        for concept in self.concepts:
            components, count = ndimage.label(concept.mask, structure=EIGHT_CONNECTED)
            areas = np.bincount(components.ravel(), minlength=count + 1)
            for index, box in enumerate(ndimage.find_objects(components), start=1):
                if box is None or areas[index] < max(min_area, 1):
                    continue
                rows, cols = box
                bbox = (cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
                found.append(Instance(concept.name, concept.label, components == index, bbox, int(areas[index])))
        return found


def overlap_keys(concept: ConceptMask) -> np.ndarray:
    """(K,) float32: the concept's score of each cluster it keeps (the range's low end, exact
    wherever another concept keeps the cluster too), -inf where it does not keep it."""
    return np.where(concept.clusters, concept.score_low, np.float32(-np.inf)).astype(np.float32)


def pixel_clusters(labels: np.ndarray, patch_grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(H, W) the cluster of the patch under each pixel's centre (row = floor((y + 0.5) h / H))."""
    (h, w), (height, width) = patch_grid, size
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return labels.reshape(h, w)[rows[:, None], cols[None, :]]


def _exact_where_contested(
    target: EncodedTarget, labels: Any, decoded: dict[str, ConceptDecode], references: dict[str, Reference],
    keeps: dict[str, np.ndarray],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per concept with a candidate, its (low, high) score ranges, with every cluster that another
    concept keeps too made exact (kernels.exact_cluster_scores votes the rest of their patches).
    labels: the target's (N,) cluster ids on the device; keeps: (K,) bool per concept."""
    xp = kernels.array_module(target.features)
    claims = sum(keeps.values(), np.zeros_like(next(iter(keeps.values())), dtype=np.int64))
    ranges = {}
    for name, keep in keeps.items():
        one = decoded[name]
        low = kernels.to_numpy(one.aggregate.score_low).copy()
        high = kernels.to_numpy(one.aggregate.score_high).copy()
        ids = np.nonzero(keep & (claims >= 2) & (low != high))[0]
        if ids.size:
            exact = kernels.to_numpy(kernels.exact_cluster_scores(
                labels=labels, forward=one.forward, features=target.features,
                debiased=target.debiased, sim_fwd=one.similarity, reference=references[name].side,
                seed=one.aggregate.seed, clusters=xp.asarray(ids),
            ))
            low[ids], high[ids] = exact, exact
        ranges[name] = (low, high)
    return ranges


def decode_concepts(
    decoder: ConceptDecoder,
    target: EncodedTarget,
    original_size: tuple[int, int],
    references: dict[str, Reference],
    clock: StageClock,
) -> ConceptsResult:
    """Each concept's §6-§9 on the encoded target (`ConceptDecoder.decode`), then the exact scores
    that overlaps need (charged to "aggregation", and only when two concepts keep a cluster).
    Each concept's own matching, aggregation, upsampling and refinement are also kept in its
    `timings_ms`."""
    decoded, own_ms = {}, {}
    for name, reference in references.items():
        mine = clock.fresh()
        decoded[name] = decoder.decode(target, reference.side, original_size, mine)
        for stage, ms in mine.ms.items():  # the clustering, if this concept ran it, counts for the target
            clock.add(stage, ms)
        own_ms[name] = {stage: mine.ms.get(stage, 0.0) for stage in PER_CONCEPT_STAGES}
    grid = decoder.patch_grid
    device_labels = target.labels(clock) if target.clustered else None  # computed already: no clustering here
    labels = np.zeros(0, dtype=np.int64) if device_labels is None else kernels.to_numpy(device_labels)
    clusters = int(labels.max()) + 1 if labels.size else 0
    patch_masks, keeps = {}, {}
    for name, one in decoded.items():
        has_seed = one.aggregate is not None and one.aggregate.seed is not None
        patch_masks[name] = kernels.to_numpy(one.aggregate.patch_mask) if has_seed else np.zeros(grid[0] * grid[1], bool)
        if has_seed:
            keeps[name] = np.bincount(labels[patch_masks[name]], minlength=clusters) > 0
    ranges = {name: (kernels.to_numpy(decoded[name].aggregate.score_low),
                     kernels.to_numpy(decoded[name].aggregate.score_high)) for name in keeps}
    if len(keeps) > 1:  # a cluster two concepts keep needs its scores exact (the label map compares them)
        with clock.stage("aggregation"):
            ranges = _exact_where_contested(target, device_labels, decoded, references, keeps)
    concepts = []
    for index, (name, one) in enumerate(decoded.items(), start=1):
        zeros = np.zeros(clusters, dtype=np.float32)
        low, high = ranges.get(name, (zeros, zeros.copy()))
        concepts.append(ConceptMask(
            name=name, label=index, mask=one.mask, patch_mask=patch_masks[name],
            clusters=keeps.get(name, np.zeros(clusters, dtype=bool)), seed=one.aggregate.seed if name in keeps else None,
            score_low=low, score_high=high, timings_ms=own_ms[name], quality=mask_quality(one.evidence, one.mask),
        ))
    return ConceptsResult(concepts=tuple(concepts), labels=labels if clusters else None, patch_grid=grid,
                          original_size=original_size)
