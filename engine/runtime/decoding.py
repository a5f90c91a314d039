"""Steps 4-9 split where the reference first matters: what a target needs once, whatever the
concept (debiased coordinates, doc §4; its clusters, §7), and what each concept costs on top
(forward matching, §6; pruned backward votes, seed and merge, §6 + §8; back to pixels, §9).

Every mask the Segmenter returns is one `EncodedTarget` and a `ConceptDecoder.decode` per concept
(engine/runtime/concepts.py); a single reference is a one-entry call. The kernels and their
inputs do not depend on the other concepts, so each concept's mask is bit for bit the mask of
segmenting it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from insid3 import kernels
from insid3.engine.runtime.quality import SeedEvidence, no_seed, seed_evidence
from insid3.engine.runtime.refinement import Refiner
from insid3.engine.runtime.timing import StageClock


class EncodedTarget:
    """One target's side of steps 4-9: its original features (N, C) and debiased coordinates
    (N, D), and its §7 clusters, computed on the first concept that needs them (one with a
    forward candidate: without one the mask is empty whatever the clusters) and then reused."""

    def __init__(self, *, features: Any, debiased: Any, tau: float, pixels: Any = None) -> None:
        self.features, self.debiased, self.tau = features, debiased, tau
        self.pixels = pixels  # (3, R, R) normalised, for the CRF refinement only (engine/runtime/refinement.py)
        self._labels: Any = None

    @property
    def clustered(self) -> bool:
        return self._labels is not None

    def labels(self, clock: StageClock) -> Any:
        """(N,) int cluster ids of doc §7, clustering (timed as "clustering") only the first time."""
        if self._labels is None:
            with clock.stage("clustering"):
                self._labels = kernels.average_linkage_clusters(self.features, self.tau)
        return self._labels


def encode_target(features: Any, frame: Any, tau: float, clock: StageClock, pixels: Any = None) -> EncodedTarget:
    """Doc §4 for one target's (N, C) features, in the DebiasFrame's coordinates."""
    with clock.stage("debias"):
        debiased = kernels.debiased_coordinates(features, frame)
    return EncodedTarget(features=features, debiased=debiased, tau=tau, pixels=pixels)


@dataclass(frozen=True, eq=False)
class ConceptDecode:
    """One concept on one target: its bool (H, W) mask, and what §8 said on the device: the
    forward similarities and candidates (N,), and the pruned aggregate (None when no patch was a
    forward candidate: then the mask is empty and the target may not be clustered); evidence:
    the seed's numbers for the mask's quality record (engine/runtime/quality.py)."""

    mask: np.ndarray
    similarity: Any
    forward: Any
    aggregate: kernels.pruned.PrunedAggregate | None
    evidence: SeedEvidence


def decode_concept(
    target: EncodedTarget,
    reference: kernels.ReferenceSide,
    *,
    merge_threshold: float,
    patch_grid: tuple[int, int],
    original_size: tuple[int, int],
    clock: StageClock,
    refiner: Refiner,
) -> ConceptDecode:
    """Doc §6, §8 and §9 for one reference on an encoded target (§9 finished by `refiner` at its
    resolution R: bilinear, or the dense CRF, engine/runtime/refinement.py)."""
    with clock.stage("matching"):
        similarity = kernels.forward_similarity(target.debiased, reference.prototype)
        forward = kernels.forward_candidates(similarity)
        any_forward = bool(forward.any())
    aggregate, evidence = None, no_seed()
    if any_forward:
        # Backward votes come after the clustering: with the labels known, only the forward
        # patches whose votes can change the mask are voted (kernels.pruned_aggregate).
        labels = target.labels(clock)
        with clock.stage("aggregation"):  # backward votes (pruned) + seed and merge, doc §6 + §8
            aggregate = kernels.pruned_aggregate(
                labels=labels,
                forward=forward,
                features=target.features,
                debiased=target.debiased,
                sim_fwd=similarity,
                reference=reference,
                merge_threshold=merge_threshold,
            )
            seed = aggregate.seed
            evidence = seed_evidence(
                labels=labels, forward=forward, debiased=target.debiased, reference=reference, seed=seed,
                seed_score=None if seed is None else aggregate.score_low[seed], merge_threshold=merge_threshold,
            )
        patch_mask = aggregate.patch_mask
    else:  # no forward patch means no candidate: the empty mask (doc §6)
        with clock.stage("aggregation"):
            patch_mask = forward
    mask = refiner.finish(patch_mask.reshape(patch_grid), original_size, target.pixels, clock)  # to the host
    return ConceptDecode(mask=mask, similarity=similarity, forward=forward, aggregate=aggregate, evidence=evidence)


@dataclass(frozen=True)
class ConceptDecoder:
    """What `decode_concept` needs besides the target and the reference, fixed per Segmenter:
    its merge threshold, the bundle's patch grid and its §9 refiner."""

    merge_threshold: float
    patch_grid: tuple[int, int]
    refiner: Refiner

    def decode(
        self, target: EncodedTarget, reference: kernels.ReferenceSide, original_size: tuple[int, int],
        clock: StageClock,
    ) -> ConceptDecode:
        return decode_concept(target, reference, merge_threshold=self.merge_threshold, patch_grid=self.patch_grid,
                              original_size=original_size, clock=clock, refiner=self.refiner)
