"""INSID3's dense-CRF mask refinement, transcribed (docs/crf.md): band, unaries, the library's
regularised Frank-Wolfe solver, write-back.

After §9's first step has produced the R x R mask M0, the authors (with their CRF switch on)
re-decide the pixels of a 10-pixel band around M0's boundary with a fully connected two-label
CRF: spatial and bilateral Gaussian kernels evaluated by the permutohedral lattice
(`insid3.authors_way.lattice`), 10 Frank-Wolfe steps of size 1 with an l2 regulariser (a
sparsemax per pixel). Torch float32 as their code, the lattice in the arithmetic asked for.
This is the oracle of the engine's `kernels.crf`; it rebuilds both lattices on every
filtering, as the library does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from insid3.authors_way.lattice import Precision, bilateral_positions, permutohedral_filter, spatial_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class AuthorsCrf:
    """The module INSID3 builds once per model: its parameters at image size S."""

    alpha: float  # bilateral position std, px
    beta: float  # bilateral colour std, RGB in [0, 1]
    gamma: float  # spatial std, px
    spatial_weight: float = 3.0
    bilateral_weight: float = 20.0
    iterations: int = 10
    band_px: int = 10
    p_core: float = 0.95

    @classmethod
    def at_size(cls, size: int) -> "AuthorsCrf":
        scale = float(size) / 512.0
        return cls(alpha=12.0 * scale, beta=0.03, gamma=4.0 * scale)


def band_regions(mask: torch.Tensor, band_px: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(band, core_in, core_out) of an (S, S) bool mask: counts of foreground under a disk of
    radius max(1, band_px // 2), zero-padded, as a float32 convolution."""
    r = max(1, band_px // 2)
    offsets = torch.arange(-r, r + 1)
    ys, xs = torch.meshgrid(offsets, offsets, indexing="ij")
    disk = ((xs**2 + ys**2) <= r * r).float()[None, None]
    count = F.conv2d(mask.float()[None, None], disk, padding=r)[0, 0]
    dilated, eroded = count > 0, count == float(disk.sum().item())
    return dilated ^ eroded, eroded, ~dilated


def unaries(mask: torch.Tensor, crf: AuthorsCrf) -> torch.Tensor:
    """(1, 2, S, S) scores (background, foreground) = (-l, l), l = logit of 0.95 / 0.05 / 0.5."""
    band, core_in, core_out = band_regions(mask, crf.band_px)
    prob = mask.float().clone()
    prob[core_in] = crf.p_core
    prob[core_out] = 1.0 - crf.p_core
    prob[band] = 0.5
    logit = torch.logit(prob.clamp(1e-6, 1 - 1e-6))
    return torch.stack([-logit, logit], dim=0).unsqueeze(0).contiguous()


def guide_image(pixels: torch.Tensor) -> torch.Tensor:
    """(3, S, S) RGB in [0, 1] from the ImageNet-normalised target, as the authors undo it."""
    mean = torch.tensor(IMAGENET_MEAN).reshape(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(3, 1, 1)
    return ((pixels * std) + mean).clamp(0, 1)


def sparsemax(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """Euclidean projection onto the simplex along `dim`, by the sort-and-threshold algorithm
    the library uses (Martins & Astudillo): shift by the maximum, sort descending, the support
    is every rank j with j * z_(j) > cumsum_j - 1, threshold tau = (cumsum_k - 1) / k."""
    shifted = scores - scores.max(dim=dim, keepdim=True).values
    ordered = torch.sort(shifted, descending=True, dim=dim).values
    cumulative = ordered.cumsum(dim) - 1
    shape = [1] * scores.dim()
    shape[dim] = -1
    ranks = torch.arange(1, scores.shape[dim] + 1, dtype=scores.dtype).view(shape)
    support = (ranks * ordered > cumulative).sum(dim=dim, keepdim=True)
    tau = cumulative.gather(dim, support - 1) / support.to(scores.dtype)
    return torch.clamp(shifted - tau, min=0)


class _Pairwise:
    """P x = -(w_s K_s x + w_b K_b x), label by label; the weights are 1x1 convolutions applied
    after filtering, as the library's Potts initialisation builds them."""

    def __init__(self, crf: AuthorsCrf, image: torch.Tensor, precision: Precision) -> None:
        _, height, width = image.shape
        self.shape = (height, width)
        self.precision = precision
        self.spatial = spatial_positions(height, width, crf.gamma, precision)
        self.bilateral = bilateral_positions(image, crf.alpha, crf.beta, precision)
        eye = torch.eye(2)[:, :, None, None]
        self.weights = (crf.spatial_weight * eye, crf.bilateral_weight * eye, -1.0 * eye)

    def _filter(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        flat = x[0].reshape(2, -1).T.contiguous()
        flat = flat.double() if self.precision == "float64" else flat
        out = permutohedral_filter(flat, positions, self.precision).float()
        return out.T.reshape(1, 2, *self.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        spatial_w, bilateral_w, compatibility = self.weights
        px = F.conv2d(self._filter(x, self.spatial), spatial_w)
        px = px + F.conv2d(self._filter(x, self.bilateral), bilateral_w)
        return F.conv2d(px, compatibility)


def frank_wolfe(u: torch.Tensor, image: torch.Tensor, crf: AuthorsCrf, precision: Precision) -> torch.Tensor:
    """(1, 2, S, S) log(x + 1e-9) after `crf.iterations` fixed steps of size 1 (l2, lambda 1)."""
    pairwise = _Pairwise(crf, image, precision)
    x = F.softmax(u, dim=1)
    px = pairwise(x)
    for step in range(crf.iterations):
        s = sparsemax(-(px - u), dim=1)  # lambda = 1: no division
        x = x + (s - x) * 1.0
        if step < crf.iterations - 1:
            px = pairwise(x)
    return torch.log(x + 1e-9)


def write_back(mask: torch.Tensor, scores: torch.Tensor, band_px: int) -> torch.Tensor:
    """M0 with its band pixels set to (foreground score > background score) and the cores set."""
    band, core_in, core_out = band_regions(mask, band_px)
    foreground = scores[0, 1] > scores[0, 0]
    result = mask.clone()
    result[band] = foreground[band]
    result[core_in] = True
    result[core_out] = False
    return result


def refine(
    mask: torch.Tensor, pixels: torch.Tensor, crf: AuthorsCrf, precision: Precision = "float32"
) -> torch.Tensor:
    """The refined (S, S) bool mask: only band pixels can change (docs/crf.md, "The band")."""
    scores = frank_wolfe(unaries(mask, crf), guide_image(pixels), crf, precision)
    return write_back(mask, scores, crf.band_px)
