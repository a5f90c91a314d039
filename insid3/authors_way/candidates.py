"""§6 candidate patches: forward against the prototype, backward by each shot's vote."""

from __future__ import annotations

import math

import torch


def forward_similarity(target_debiased: torch.Tensor, proto: torch.Tensor) -> torch.Tensor:
    """(N,) debiased similarity of every target patch to the prototype."""
    return target_debiased @ proto


def forward_candidates(similarity: torch.Tensor) -> torch.Tensor:
    """similarity > 0; where no patch is, similarity above its 0.9 quantile (torch.quantile,
    taken out as a Python float and compared in the similarities' dtype, as the authors)."""
    forward = similarity > 0
    if not forward.any():
        forward = similarity > float(torch.quantile(similarity, 0.9))
    return forward


def backward_candidates(
    target_debiased: torch.Tensor, reference_debiased: torch.Tensor, patch_masks: torch.Tensor
) -> torch.Tensor:
    """(N,) bool: the target patches whose nearest patch of a shot lies in that shot's mask for
    at least ceil(S / 2) of the S shots. reference_debiased (S, Nr, C), patch_masks (S, Nr)."""
    votes = torch.zeros(target_debiased.shape[0], dtype=torch.int32, device=target_debiased.device)
    for features, mask in zip(reference_debiased, patch_masks):
        # (Nr, N) as the authors' einsum; argmax takes the first index among ties.
        nearest = (features @ target_debiased.T).argmax(dim=0)
        votes += mask[nearest].to(torch.int32)
    return votes >= math.ceil(len(patch_masks) / 2)
