"""Every setting of a grid on one episode, sharing all that does not depend on the setting.

For a target and its references, the features come from the FeatureCache (each image through
the backbone once in the whole calibration); per svd_components, one debias frame (one
Segmenter per value on the one backend: the frame is built in its constructor), the references'
shots, the target's debiased coordinates and the forward matching (§6) once; per tau, the
target's §7 clusters once, shared by every frame (clustering reads the original features only);
per frame and tau, one pruned aggregation (§6 + §8), from which every merge_threshold's patch
mask follows (`patch_masks_at`); per distinct patch mask and refinement, §9 and the counts once.
The kernels and their inputs are those of engine/runtime/decoding.decode_concept (what
Segmenter.decode ends in), so each mask is bit for bit what a Segmenter built with that setting
returns (tests/eval/test_calibrate.py checks it against insid3-eval's runner). decode_concept
itself is not called: it also votes every forward patch for the quality record's confirmed share,
which the score (`quality_score`) does not read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from insid3 import kernels
from insid3.engine.runtime.backends.base import Backend
from insid3.engine.runtime.images import prepare_reference_mask
from insid3.engine.runtime.quality import SeedEvidence, mask_quality
from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.refinement import Refiner
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import StageClock
from insid3.errors import ReferenceMaskError, SettingsError
from insid3.evaluation.features_cache import FeatureCache, content_key
from insid3.evaluation.grid import on_grid, prediction_size
from insid3.evaluation.metrics import Counts, intersection_union
from insid3.evaluation.runner import EMPTY_REFERENCE_NOTE
from insid3.format.bundle import Bundle
from insid3.format.refinement import RefineSettings
from insid3.format.settings import Hyperparameters
from insid3.kernels.aggregation import cluster_prototypes, row_dots

# Default grids: around the bundle's defaults (svd_components scaled, tau and merge_threshold shifted).
SVD_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)
TAU_STEPS = (-0.1, -0.05, 0.0, 0.05, 0.1)
MERGE_STEPS = (-0.1, -0.05, 0.0, 0.05, 0.1)
# The per-mask score the threshold S is proposed on (`mask_score`: engine/runtime/quality.py's).
SCORE_NAME = "quality.score"


@dataclass(frozen=True, order=True)
class Setting:
    svd_components: int
    tau: float
    merge_threshold: float
    refine: str = "bilinear"

    @property
    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters(svd_components=self.svd_components, tau=self.tau, merge_threshold=self.merge_threshold)

    def to_json(self) -> dict:
        return {"svd_components": self.svd_components, "tau": self.tau, "merge_threshold": self.merge_threshold,
                "refine": self.refine}

    def describe(self) -> str:
        refine = "" if self.refine == "bilinear" else f", refine {self.refine}"
        return f"svd_components {self.svd_components}, tau {self.tau:g}, merge_threshold {self.merge_threshold:g}{refine}"


@dataclass(frozen=True)
class SweepGrid:
    """The values swept on each axis (sorted, unique; the bundle's defaults always among them)."""

    svd_components: tuple[int, ...]
    tau: tuple[float, ...]
    merge_threshold: tuple[float, ...]
    refine: tuple[str, ...] = ("bilinear",)

    @classmethod
    def around(cls, defaults: Hyperparameters, embed_dim: int, basis_vectors: int, *,
               svd_components: tuple[int, ...] | None = None, tau: tuple[float, ...] | None = None,
               merge_threshold: tuple[float, ...] | None = None, refine: tuple[str, ...] = ("bilinear",)) -> "SweepGrid":
        """Given values, or grids around `defaults`; the defaults are added where missing (the
        report's gain is measured against them)."""
        limit = min(embed_dim - 1, basis_vectors)
        if svd_components is None:
            svd_components = tuple(min(limit, max(0, round(defaults.svd_components * k))) for k in SVD_SCALES)
        if tau is None:
            tau = tuple(min(1.0, max(0.05, round(defaults.tau + d, 4))) for d in TAU_STEPS)
        if merge_threshold is None:
            merge_threshold = tuple(min(1.0, max(-1.0, round(defaults.merge_threshold + d, 4))) for d in MERGE_STEPS)
        grid = cls(
            svd_components=tuple(sorted({int(v) for v in (*svd_components, defaults.svd_components)})),
            tau=tuple(sorted({float(v) for v in (*tau, defaults.tau)})),
            merge_threshold=tuple(sorted({float(v) for v in (*merge_threshold, defaults.merge_threshold)})),
            refine=tuple(dict.fromkeys(refine)),
        )
        for setting in grid.settings():
            setting.hyperparameters.validated(embed_dim)
        if max(grid.svd_components) > basis_vectors:
            raise SettingsError(f"svd_components={max(grid.svd_components)} exceeds the bundle's {basis_vectors} "
                                "basis vectors")
        for method in grid.refine:
            RefineSettings.of(method)
        return grid

    def settings(self) -> list[Setting]:
        """Every setting, in the report's order (svd_components, then tau, merge_threshold, refine)."""
        return [Setting(s, t, m, r) for s, t, m, r in
                itertools.product(self.svd_components, self.tau, self.merge_threshold, self.refine)]

    def __len__(self) -> int:
        return len(self.svd_components) * len(self.tau) * len(self.merge_threshold) * len(self.refine)

    def to_json(self) -> dict:
        return {"svd_components": list(self.svd_components), "tau": list(self.tau),
                "merge_threshold": list(self.merge_threshold), "refine": list(self.refine)}


class SharedClusters:
    """One target's §7 clusters per tau, computed the first time a setting needs them (one with a
    forward candidate) and then shared by every debias frame (they read the original features only)."""

    def __init__(self, features: Any) -> None:
        self.features = features
        self._by_tau: dict[float, Any] = {}

    def labels(self, tau: float, clock: StageClock) -> Any:
        if tau not in self._by_tau:
            with clock.stage("clustering"):
                self._by_tau[tau] = kernels.average_linkage_clusters(self.features, tau)
        return self._by_tau[tau]



@dataclass(frozen=True)
class Outcome:
    """One setting on one episode: the two-bin counts on the grid and the mask's score (None for
    an empty mask)."""

    counts: Counts
    score: float | None


def seed_similarity(debiased: Any, labels: Any, reference: kernels.ReferenceSide, seed: int) -> float:
    """<p, q~_seed>: the seed cluster's unit mean debiased feature against the reference prototype
    (SeedEvidence.seed_similarity of engine/runtime/quality.py, without the record's backward votes)."""
    xp = kernels.array_module(debiased)
    count = int(labels.max()) + 1
    prototype = cluster_prototypes(debiased, labels, xp.asarray([seed], dtype=xp.int64), count)
    return float(kernels.to_numpy(row_dots(prototype, reference.prototype))[0])


def quality_score(similarity: float | None, mask: np.ndarray) -> float | None:
    """The mask's quality score (quality.mask_quality's `score`), None for an empty mask."""
    if similarity is None or not mask.any():
        return None
    evidence = SeedEvidence(seed_similarity=similarity, seed_score=None, seed_margin=None, forward_patches=0,
                            confirmed_patches=0)
    return mask_quality(evidence, mask).score


def patch_masks_at(aggregate: kernels.pruned.PrunedAggregate, merge_thresholds: tuple[float, ...],
                   inputs: dict[str, Any]) -> list[Any]:
    """Doc §8's (N,) patch mask at each merge threshold, from one pruned aggregate computed at any
    threshold with the same `inputs` (pruned_aggregate's other arguments). Exact, as the pruned
    aggregation is: the seed does not depend on the threshold; a cluster is foreground iff its
    float32 score exceeds the float32 threshold (the seed by its own score), and the aggregate's
    score ranges (kernels/pruned_scores.py: they hold each cluster's score whatever the threshold)
    decide every cluster whose range lies on one side; the others are scored exactly
    (kernels.exact_cluster_scores, each cluster at most once)."""
    seed = aggregate.seed
    if seed is None:  # no candidate patch: the empty mask whatever the threshold (doc §6)
        return [aggregate.patch_mask for _ in merge_thresholds]
    xp = kernels.array_module(aggregate.score_low)
    low, high = aggregate.score_low, aggregate.score_high
    exact = xp.zeros_like(low)
    scored = xp.zeros(low.shape, dtype=bool)
    masks = []
    for merge in merge_thresholds:
        threshold = xp.float32(merge)
        undecided = (low <= threshold) & (high > threshold)
        missing = xp.nonzero(undecided & ~scored)[0]
        if missing.shape[0]:
            exact[missing] = kernels.exact_cluster_scores(**inputs, seed=seed, clusters=missing)
            scored[missing] = True
        foreground = xp.where(undecided, exact > threshold, low > threshold)
        foreground[seed] = low[seed] > threshold  # the seed's range is its exact score
        masks.append(foreground[inputs["labels"]])
    return masks


class SweepScorer:
    """Scores episodes (target and reference LoadedItems) under every setting of a grid."""

    def __init__(self, bundle: Bundle, backend: Backend, grid: SweepGrid, cache: FeatureCache,
                 *, protocol: str = "square") -> None:
        self.bundle, self.backend, self.grid, self.cache, self.protocol = bundle, backend, grid, cache, protocol
        meta = bundle.metadata
        self.resolution = meta.resolution
        prediction_size(protocol, self.resolution, (1, 1))
        defaults = meta.defaults
        # One Segmenter per svd_components: its DebiasFrame, built once; the backbone is shared.
        self.segmenters = {
            s: Segmenter(bundle, backend, Hyperparameters(s, defaults.tau, defaults.merge_threshold))
            for s in grid.svd_components
        }
        self.refiners = {method: Refiner(resolution=meta.resolution, settings=RefineSettings.of(method),
                                         mean=tuple(meta.mean), std=tuple(meta.std)) for method in grid.refine}
        self.settings = grid.settings()
        self.images_encoded = 0
        self.clock = StageClock(backend.synchronize)  # every stage of every episode, summed

    @property
    def any_segmenter(self) -> Segmenter:
        return next(iter(self.segmenters.values()))

    def features(self, rgbs: list[np.ndarray]) -> list[Any]:
        """(N, C) features per image: from the cache, the missing ones encoded in one backbone call."""
        keys = [content_key(rgb) for rgb in rgbs]
        found = {key: self.cache.get(key) for key in dict.fromkeys(keys)}
        missing = [key for key, value in found.items() if value is None]
        if missing:
            seg = self.any_segmenter
            first = {key: rgbs[keys.index(key)] for key in missing}
            with self.clock.stage("backbone"):
                encoded = seg.encode([seg.prepare(rgb) for rgb in first.values()], role="target")
            for i, key in enumerate(missing):
                found[key] = encoded[i].copy()  # a copy: a cached row must not pin its whole batch
                self.cache.put(key, found[key])
            self.images_encoded += len(missing)
        return [found[key] for key in keys]

    def score(self, target_rgb: np.ndarray, target_mask: np.ndarray, references: list[tuple[np.ndarray, np.ndarray]],
              ignore: np.ndarray | None = None) -> tuple[list[Outcome], str | None]:
        """Every setting's Outcome, in grid order, and a note when the episode cannot be segmented."""
        size = target_rgb.shape[:2]
        grid_size = prediction_size(self.protocol, self.resolution, size)
        gt = on_grid(target_mask, self.protocol, self.resolution)
        ignore = None if ignore is None else on_grid(ignore, self.protocol, self.resolution)
        try:
            masks = [prepare_reference_mask(mask, rgb.shape[:2], self.resolution) for rgb, mask in references]
        except ReferenceMaskError:
            empty = intersection_union(np.zeros(grid_size, dtype=bool), gt, ignore)
            return [Outcome(empty, None) for _ in self.settings], EMPTY_REFERENCE_NOTE
        features = self.features([target_rgb] + [rgb for rgb, _ in references])
        target, xp = features[0], self.backend.xp
        stacked = xp.stack(features[1:])
        crf = any(RefineSettings.of(method).crf for method in self.grid.refine)
        pixels = self.any_segmenter.prepare(target_rgb).pixels if crf else None
        clusters = SharedClusters(target)
        outcomes: dict[Setting, Outcome] = {}
        clock = self.clock
        patch_grid = self.bundle.metadata.patch_grid
        # One patch mask gives one mask (§9 reads nothing else of the setting, the CRF the same
        # target pixels): settings that agree on it share its upsampling and counts.
        finished: dict[tuple[str, bytes], tuple[Counts, np.ndarray]] = {}
        scores: dict[tuple[str, bytes, float], float | None] = {}
        for s, seg in self.segmenters.items():
            reference = Reference.from_shots(seg.shots_from_features(stacked, masks), seg.fingerprint).side
            encoded = seg.encode_target(target, clock, pixels)
            with clock.stage("matching"):  # decode_concept's §6, once per frame
                similarity = kernels.forward_similarity(encoded.debiased, reference.prototype)
                forward = kernels.forward_candidates(similarity)
                any_forward = bool(forward.any())
            for tau in self.grid.tau:
                merges = self.grid.merge_threshold
                patch_masks, seed, score_of_seed = [forward] * len(merges), None, None  # no forward patch: empty
                if any_forward:
                    labels = clusters.labels(tau, clock)
                    with clock.stage("aggregation"):  # decode_concept's §6 + §8, every threshold from one aggregate
                        inputs = {"labels": labels, "forward": forward, "features": target,
                                  "debiased": encoded.debiased, "sim_fwd": similarity, "reference": reference}
                        aggregate = kernels.pruned_aggregate(**inputs, merge_threshold=merges[len(merges) // 2])
                        patch_masks = patch_masks_at(aggregate, merges, inputs)
                    seed = aggregate.seed
                    if seed is not None:
                        with clock.stage("quality"):
                            score_of_seed = seed_similarity(encoded.debiased, labels, reference, seed)
                for merge, patch_mask in zip(merges, patch_masks):
                    for method, refiner in self.refiners.items():
                        key = (method, kernels.to_numpy(patch_mask).tobytes())
                        if key not in finished:
                            mask = refiner.finish(patch_mask.reshape(patch_grid), grid_size, pixels, clock)
                            with clock.stage("scoring"):
                                finished[key] = (intersection_union(mask, gt, ignore), mask)
                        counts, mask = finished[key]
                        score = None
                        if score_of_seed is not None:
                            if (*key, score_of_seed) not in scores:
                                scores[(*key, score_of_seed)] = quality_score(score_of_seed, mask)
                            score = scores[(*key, score_of_seed)]
                        outcomes[Setting(s, tau, merge, method)] = Outcome(counts, score)
        return [outcomes[setting] for setting in self.settings], None
