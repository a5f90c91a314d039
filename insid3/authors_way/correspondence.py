"""Keypoint matching as the authors run it (docs/correspondence.md), one torch function per step.

    snap_keypoints      source pixels -> the (u, v) patch cell, scaled in float32, torch.round
    keypoint_similarity the cells' descriptors against every target patch (K, h, w)
    gaussian_weighted   a Gaussian (sigma in patches) centred on each map's argmax, times the map
    soft_argmax         a temperature softmax over all h * w cells, expected (x, y) in patches
    to_target_pixels    patch units -> target pixels, top-left corner convention
    match_features      all of it from the two images' features, debiased or not
    match               from images: source and target encoded together, as the authors batch them

Features are (N, C) row-major patches, as everywhere in this package; the authors index a
(C, h, w) map, which is the same array viewed differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from insid3.authors_way.debias import debias
from insid3.authors_way.model import AuthorsModel, encode_together
from insid3.authors_way.preprocess import preprocess_image
from insid3.engine.runtime.images import ImageLike

SIGMA_PATCHES = 7
TEMPERATURE = 0.04


def _rescale(points: torch.Tensor, from_size: Sequence[int], to_size: Sequence[int]) -> torch.Tensor:
    """(..., 2) (x, y) scaled by to_w / from_w and to_h / from_h (Python doubles) in float32."""
    scaled = points.clone().float()
    scaled[..., 0] *= to_size[1] / from_size[1]
    scaled[..., 1] *= to_size[0] / from_size[0]
    return scaled


def snap_keypoints(keypoints: torch.Tensor, source_size: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """(K, 2) (x, y) source pixels -> (K, 2) long (u, v): rounded half to even, then clamped."""
    rows, columns = grid
    rounded = _rescale(keypoints, source_size, grid).round().long()
    return torch.stack([rounded[..., 0].clamp(0, columns - 1), rounded[..., 1].clamp(0, rows - 1)], dim=-1)


def keypoint_similarity(
    source: torch.Tensor, target: torch.Tensor, cells: torch.Tensor, grid: Sequence[int]
) -> torch.Tensor:
    """(K, h, w): the descriptor at row v, column u of the source map against every target patch."""
    rows, columns = grid
    source_map = source.T.reshape(-1, rows, columns)  # (C, h, w), as the authors hold it
    descriptors = source_map[:, cells[:, 1], cells[:, 0]].T  # (K, C)
    return (descriptors @ target.T).reshape(-1, rows, columns)


def _patch_grid(rows: int, columns: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w) column and row indices, built with linspace as the authors do (exact integers)."""
    ys = torch.linspace(0, rows - 1, rows, device=device)
    xs = torch.linspace(0, columns - 1, columns, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return grid_x, grid_y


def gaussian_weighted(similarity: torch.Tensor, sigma: float = SIGMA_PATCHES) -> torch.Tensor:
    """(K, h, w) maps times an unnormalised Gaussian centred on each map's first maximum."""
    count, rows, columns = similarity.shape
    index = torch.max(similarity.reshape(count, -1), dim=-1).indices
    peak_y = (index // columns).float().reshape(count, 1, 1)
    peak_x = (index % columns).float().reshape(count, 1, 1)
    grid_x, grid_y = _patch_grid(rows, columns, similarity.device)
    gauss = torch.exp(-((grid_x - peak_x) ** 2 + (grid_y - peak_y) ** 2) / (2 * sigma**2))
    return gauss * similarity


def soft_argmax(
    similarity: torch.Tensor, sigma: float = SIGMA_PATCHES, temperature: float = TEMPERATURE
) -> torch.Tensor:
    """(K, h, w) -> (K, 2) expected (x, y) patch index under softmax(weighted / temperature)."""
    count, rows, columns = similarity.shape
    weighted = gaussian_weighted(similarity, sigma).reshape(count, -1)
    shifted = weighted - weighted.max(dim=-1, keepdim=True).values
    exponent = torch.exp(shifted / temperature)
    probability = exponent / exponent.sum(dim=-1, keepdim=True)
    grid_x, grid_y = _patch_grid(rows, columns, similarity.device)
    cells = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # (h * w, 2)
    return (probability[..., None] * cells[None]).sum(dim=1)


def to_target_pixels(matches: torch.Tensor, target_size: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """(K, 2) patch units -> target pixels (x * W / w, y * H / h in float32, no +0.5)."""
    return _rescale(matches, grid, target_size)


def match_features(
    source: torch.Tensor,
    target: torch.Tensor,
    keypoints: torch.Tensor,
    *,
    source_size: Sequence[int],
    target_size: Sequence[int],
    grid: Sequence[int],
    basis: torch.Tensor | None,
) -> torch.Tensor:
    """(K, 2) float32 matches in target pixels from the two images' unit (N, C) features;
    `basis` (C, s) debiases both first (None: the original features)."""
    if basis is not None:
        source, target = debias(torch.stack([source, target]), basis).unbind(0)
    cells = snap_keypoints(keypoints, source_size, grid)
    similarity = keypoint_similarity(source, target, cells, grid)
    return to_target_pixels(soft_argmax(similarity), target_size, grid)


def match(
    model: AuthorsModel, source_image: ImageLike, target_image: ImageLike, keypoints, *, debiased: bool = True
) -> np.ndarray:
    """(K, 2) float32 target pixels for (K, 2) source keypoints: both images encoded as one batch."""
    source, target = preprocess_image(model, source_image), preprocess_image(model, target_image)
    features = encode_together(model, [source, target])
    points = torch.as_tensor(np.asarray(keypoints, dtype=np.float32), device=features.device)
    matches = match_features(
        features[0], features[1], points, source_size=source.original_size, target_size=target.original_size,
        grid=model.patch_grid, basis=model.basis if debiased else None,
    )
    return matches.cpu().numpy()
