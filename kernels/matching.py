"""Doc §5 (prototype) and §6 (forward and backward candidates), and the reference side they
match against (`ReferenceSide`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from insid3.errors import ReferenceMaskError
from insid3.kernels.arrays import Array, KernelInputError, array_module, l2_normalize, require


@dataclass(frozen=True, eq=False)
class ReferenceSide:
    """What doc §6 needs of the references, in the target's debiased coordinates: the shots'
    debiased features (S, Nr, D) float32, their downsampled masks (S, Nr) bool, and their
    `prototype` (D,) float32. A plain record: the kernels that take it check its shapes."""

    debiased: Array
    patch_masks: Array
    prototype: Array


def prototype(debiased_shots: Array, shot_masks: Array) -> Array:
    """p = normalise(mean over shots of (mean of the debiased fg features of that shot)).

    debiased_shots: (S, N, C) float32; shot_masks: (S, N) bool (downsampled masks, row-major).
    A shot whose mask is empty is skipped; all empty raises ReferenceMaskError. Returns (C,).
    """
    require("prototype", "debiased_shots", debiased_shots, ndim=3, dtype="float32")
    shots, patches, _ = debiased_shots.shape
    require("prototype", "shot_masks", shot_masks, shape=(shots, patches), dtype="bool")
    xp = array_module(debiased_shots, shot_masks)
    counts = shot_masks.sum(axis=1)  # (S,)
    used = counts > 0
    n_used = int(used.sum())  # host sync: the all-empty case must raise
    if n_used == 0:
        raise ReferenceMaskError("every reference shot has an empty foreground after downsampling")
    sums = xp.einsum("sn,snc->sc", shot_masks.astype(xp.float32), debiased_shots)  # (S, C)
    means = sums / xp.maximum(counts, 1).astype(xp.float32)[:, None]
    mean_of_shots = (means * used.astype(xp.float32)[:, None]).sum(axis=0) / xp.float32(n_used)
    return l2_normalize(mean_of_shots)


def forward_similarity(target_debiased: Array, prototype: Array) -> Array:
    """sim_fwd[i] = <F~t_i, p>: (N, D) x (D,) -> (N,) float32 (D = C, or a DebiasFrame's width:
    target and prototype in the same coordinates)."""
    require("forward_similarity", "target_debiased", target_debiased, ndim=2, dtype="float32")
    require("forward_similarity", "prototype", prototype, shape=(target_debiased.shape[1],), dtype="float32")
    array_module(target_debiased, prototype)
    return target_debiased @ prototype


def torch_quantile(values: Array, q: float) -> Array:
    """torch.quantile(values, q) (linear interpolation) of a 1-D float32 array, as a 0-d array.

    PyTorch computes the rank q * (n - 1) in float32 and blends the two order statistics with
    lerp (self + w * (end - self) if w < 0.5 else end - (end - self) * (1 - w)); we repeat its
    float32 arithmetic so `values > quantile` selects the same elements.
    """
    require("torch_quantile", "values", values, ndim=1, dtype="float32")
    xp = array_module(values)
    n = values.shape[0]
    if n == 0:
        raise KernelInputError("torch_quantile: values is empty")
    rank = np.float32(q) * np.float32(n - 1)
    below, above = int(rank), int(math.ceil(rank))
    weight = np.float32(rank - np.float32(below))
    ordered = xp.sort(values)
    low, high = ordered[below], ordered[above]
    if weight < 0.5:
        return low + weight * (high - low)
    return high - (high - low) * (np.float32(1) - weight)


def forward_candidates(sim: Array) -> Array:
    """sim > 0; where no patch is > 0, sim > its 0.9 quantile (torch.quantile semantics).

    Branch-free (xp.where on a 0-d flag), so no host sync on the GPU.
    """
    require("forward_candidates", "sim", sim, ndim=1, dtype="float32")
    xp = array_module(sim)
    positive = sim > 0
    fallback = sim > torch_quantile(sim, 0.9)
    return xp.where(positive.any(), positive, fallback)


# Target rows per similarity block in backward_votes: bounds the (Nr x rows) matrix alive at once.
VOTE_BLOCK = 256


def backward_votes(target_debiased: Array, reference_debiased: Array, reference_masks: Array) -> Array:
    """votes[i] = number of shots whose nearest reference patch to target patch i lies in that
    shot's mask; nearest = argmax_j <F~t_i, F~r_j> over all of the shot's patches (ties: first
    index, as torch.argmax). int32 (N,).

    target_debiased: (N, C) float32; reference_debiased: (S, Nr, C) float32;
    reference_masks: (S, Nr) bool. Only candidate = forward AND backward patches matter, so
    callers pass the forward rows they need voted (pruned_aggregate: a few at a time).

    A row's vote does not depend on which other rows are voted with it: the similarities are
    GEMMs F~r (F~t rows)^T, each entry one dot product over C whatever the number of rows, in
    blocks of VOTE_BLOCK rows; a one-row block is doubled so that it never becomes a GEMV (a
    different kernel). pruned_aggregate relies on this to vote a few rows at a time. On CuPy
    every block is padded with zero rows to VOTE_BLOCK: cuBLAS picks its kernel (and how it splits
    C) by the GEMM's shape, so one shape for every block keeps a row's sums the same whichever rows
    come with it (on the GPU a GEMM of 256 columns costs what one of 2 does; NumPy keeps the small
    blocks, whose OpenBLAS sums do not depend on the row count).
    """
    fn = "backward_votes"
    require(fn, "target_debiased", target_debiased, ndim=2, dtype="float32")
    channels = target_debiased.shape[1]
    require(fn, "reference_debiased", reference_debiased, shape=(None, None, channels), dtype="float32")
    shots, ref_patches, _ = reference_debiased.shape
    require(fn, "reference_masks", reference_masks, shape=(shots, ref_patches), dtype="bool")
    xp = array_module(target_debiased, reference_debiased, reference_masks)
    count = int(target_debiased.shape[0])
    votes = xp.zeros(count, dtype=xp.int32)
    for start in range(0, count, VOTE_BLOCK):
        block = target_debiased[start : start + VOTE_BLOCK]
        size = int(block.shape[0])
        if xp is not np and size < VOTE_BLOCK:
            block = xp.concatenate([block, xp.zeros((VOTE_BLOCK - size, channels), dtype=block.dtype)])
        elif size == 1:
            block = xp.concatenate([block, block])
        for shot in range(shots):  # S <= a handful; one (Nr x block) similarity matrix alive at a time
            nearest = xp.argmax(reference_debiased[shot] @ block.T, axis=0)[:size]
            votes[start : start + size] += reference_masks[shot][nearest]
    return votes


def backward_candidates(votes: Array, shots: int) -> Array:
    """votes >= ceil(S / 2) (majority of shots)."""
    require("backward_candidates", "votes", votes, ndim=1, dtype="integer")
    if int(shots) < 1:
        raise KernelInputError(f"backward_candidates: shots must be >= 1, got {shots!r}")
    return votes >= math.ceil(int(shots) / 2)
