"""One episode as the authors run it: §1-§9 for one target, the references encoded with it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from insid3.authors_way.aggregation import aggregate
from insid3.authors_way.candidates import backward_candidates, forward_candidates, forward_similarity
from insid3.authors_way.clustering import cluster
from insid3.authors_way.crf import AuthorsCrf, refine
from insid3.authors_way.debias import debias
from insid3.authors_way.lattice import Precision
from insid3.authors_way.model import AuthorsModel, encode_together
from insid3.authors_way.preprocess import preprocess_image, preprocess_shot
from insid3.authors_way.reference_side import downsample_mask, prototype
from insid3.authors_way.resize import interpolate
from insid3.authors_way.upsample import upsample
from insid3.engine.runtime.images import ImageLike
from insid3.engine.runtime.timing import StageClock


def segment_features(
    features: torch.Tensor,
    reference_masks: torch.Tensor,
    basis: torch.Tensor,
    *,
    tau: float,
    merge_threshold: float,
    grid: tuple[int, int],
    resolution: int,
    original_size: tuple[int, int],
    labels: torch.Tensor | None = None,
    clock: StageClock | None = None,
    crf: AuthorsCrf | None = None,
    pixels: torch.Tensor | None = None,
    crf_precision: Precision = "float32",
) -> torch.Tensor:
    """§4-§9 from the backbone's features: (H, W) bool.

    features (S + 1, N, C): the S shots then the target, as the authors batch them;
    reference_masks (S, R, R) bool; basis (C, s). `labels` is the §7 partition when the caller
    already has it (else it is computed here). Stage times go to `clock` under the engine's
    stage names. With no candidate the authors return before clustering, and so does this.
    With `crf` (the authors' module at R) the R x R mask is refined on the target's normalised
    (3, R, R) `pixels` before the resize to the original size (insid3.authors_way.crf)."""
    clock = clock or StageClock()
    with clock.stage("debias"):
        debiased = debias(features, basis)
        reference_debiased, target_debiased = debiased[:-1], debiased[-1]
    with clock.stage("matching"):
        patch_masks = torch.stack([downsample_mask(mask, grid).reshape(-1) for mask in reference_masks])
        proto = prototype(reference_debiased, patch_masks)
        similarity = forward_similarity(target_debiased, proto)
        candidate = forward_candidates(similarity) & backward_candidates(
            target_debiased, reference_debiased, patch_masks
        )
    with clock.stage("clustering"):
        if labels is None and candidate.any():
            labels = cluster(features[-1], tau)
    with clock.stage("aggregation"):
        patch_mask = candidate if labels is None else aggregate(
            labels, candidate, features[-1], target_debiased, similarity, proto, merge_threshold
        )
    if crf is None:
        with clock.stage("upsample"):
            mask = upsample(patch_mask.reshape(grid), resolution, original_size)
        with clock.stage("refine"):
            return mask
    with clock.stage("upsample"):
        square = interpolate(patch_mask.reshape(grid), (resolution, resolution), "bilinear") > 0.5
    with clock.stage("refine"):
        refined = refine(square, pixels, crf, crf_precision)
        return interpolate(refined, original_size, "bilinear") > 0.5


def segment(
    model: AuthorsModel,
    shots: Sequence[tuple[ImageLike, ImageLike]],
    target: ImageLike,
    clock: StageClock | None = None,
    crf: AuthorsCrf | None = None,
) -> np.ndarray:
    """(H, W) bool mask of `target`: every shot re-read and re-encoded with it, as the authors
    (with `crf`, refined by their dense CRF: insid3.authors_way.crf, slow plain loops)."""
    clock = clock or StageClock(model.synchronizer())
    hp = model.hyperparameters
    with clock.stage("preprocess"):
        prepared_shots = [preprocess_shot(model, image, mask) for image, mask in shots]
        prepared_target = preprocess_image(model, target)
    with clock.stage("backbone"):
        features = encode_together(model, [image for image, _ in prepared_shots] + [prepared_target])
    mask = segment_features(
        features, torch.stack([mask for _, mask in prepared_shots]), model.basis,
        tau=hp.tau, merge_threshold=hp.merge_threshold, grid=model.patch_grid,
        resolution=model.resolution, original_size=prepared_target.original_size, clock=clock,
        crf=crf, pixels=torch.from_numpy(prepared_target.pixels),
    )
    return mask.cpu().numpy()
