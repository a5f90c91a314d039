"""The positional subspace of a backbone at one resolution (algorithm doc §3).

Features of the all-black image (pixel value 0, then ImageNet-normalised) carry position and
no content: their principal directions are what INSID3 projects out of every feature.
"""

from __future__ import annotations

import numpy as np
import torch

from insid3.format.bundle import IMAGENET_MEAN, IMAGENET_STD


def black_image(resolution: int) -> torch.Tensor:
    """[1, 3, R, R] float32: zeros normalised with the ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((torch.zeros(1, 3, resolution, resolution) - mean) / std).contiguous()


def positional_basis(model: torch.nn.Module, resolution: int) -> np.ndarray:
    """(C, K) float32, K = min(C, N): all left singular vectors of the centred features, in order."""
    with torch.no_grad():
        features = model(black_image(resolution))[0].double()  # [N, C], L2-normalised per patch
    e = features.T.numpy()  # (C, N)
    e = e - e.mean(axis=1, keepdims=True)  # centre across patches
    u, _, _ = np.linalg.svd(e, full_matrices=False)  # u: (C, min(C, N))
    return np.ascontiguousarray(u, dtype=np.float32)
