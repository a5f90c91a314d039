"""§4 debiasing, as the authors compute it: one projector matrix applied to the feature maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def debias(features: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """normalise(P x) per patch with P = I - B B^T: features (..., N, C), basis (C, s) of the
    same dtype. The authors build P as a C x C matrix and multiply their C x N maps by it; so
    do we (P x equals x - (x B) B^T, but not in the last bit)."""
    channels = features.shape[-1]
    projector = torch.eye(channels, dtype=features.dtype, device=features.device) - basis @ basis.T
    projected = (projector @ features.transpose(-1, -2)).transpose(-1, -2)
    return F.normalize(projected, dim=-1)
