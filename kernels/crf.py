"""INSID3's dense-CRF mask refinement as array kernels (docs/crf.md): the band around the mask's
boundary, its unaries, 10 Frank-Wolfe steps of the library's two-label dense CRF, write-back.

    refined = crf_refine(mask, guide, CrfParameters.at_size(1024))   # (S, S) bool

NumPy or CuPy, float32 where the authors' run is float32 (everything but the CPU-build lattice
of precision="float64"). Exactness against the transcription (insid3.authors_way.crf):

- band and core sets: integer counts of foreground under the disk, as the float32 convolution's
  (exact small integers);
- unaries: the three logits computed on the host in float32 (NumPy's log gives torch's values);
- start point: torch's softmax of those logits (exp rounded from double, as torch's CPU kernel
  gives; the three possible pixels are checked in the tests);
- the solver: the general two-channel form (both labels filtered), the library's order of
  operations, sparsemax by sort-and-threshold over the two labels;
- the lattices: built once per image (the library rebuilds them per filtering; same bits).

The write-back changes only band pixels: core pixels evolve inside the CRF (they feed the band
through the filters) but keep their label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insid3.kernels.arrays import Array, KernelInputError, array_module, require
from insid3.kernels.lattice import LatticeFilter, build_lattice
from insid3.kernels.lattice_geometry import Precision, bilateral_positions, check_precision, spatial_positions

_LOG_EPS = 1e-9
_LOGIT_CLAMP = 1e-6


@dataclass(frozen=True, kw_only=True)
class CrfParameters:
    """The refinement's numbers at image size S (the authors' module built with scale S / 512)."""

    alpha: float  # bilateral position std, px
    beta: float  # bilateral colour std, RGB in [0, 1]
    gamma: float  # spatial std, px
    spatial_weight: float = 3.0
    bilateral_weight: float = 20.0
    iterations: int = 10
    band_px: int = 10
    p_core: float = 0.95
    precision: Precision = "float32"

    @classmethod
    def at_size(cls, size: int, *, precision: Precision = "float32") -> "CrfParameters":
        scale = float(size) / 512.0
        return cls(alpha=12.0 * scale, beta=0.03, gamma=4.0 * scale, precision=precision)

    @property
    def radius(self) -> int:
        return max(1, self.band_px // 2)


def disk_half_widths(radius: int) -> list[int]:
    """For dy = -r..r, the largest w with w^2 + dy^2 <= r^2: the disk is rows of 2w + 1 pixels."""
    return [int(np.floor(np.sqrt(radius * radius - dy * dy))) for dy in range(-radius, radius + 1)]


def band_regions(mask: Array, radius: int) -> tuple[Array, Array, Array]:
    """(band, core_in, core_out) of an (S, S) bool mask: cnt = foreground pixels under the disk
    of offsets dx^2 + dy^2 <= r^2 (outside the image counts as background); core_in where cnt is
    the disk's size, core_out where it is 0, the band in between. Row box sums of a padded
    prefix sum, one per disk row: exact integers."""
    require("band_regions", "mask", mask, ndim=2, dtype="bool")
    xp = array_module(mask)
    height, width = mask.shape
    r = int(radius)
    padded = xp.zeros((height + 2 * r, width + 2 * r + 1), dtype=xp.int32)
    padded[r : r + height, r + 1 : r + 1 + width] = mask
    prefix = xp.cumsum(padded, axis=1, dtype=xp.int32)  # image column x sits at padded column x + r + 1
    count = xp.zeros((height, width), dtype=xp.int32)
    half_widths = disk_half_widths(r)
    for row, w in enumerate(half_widths):  # disk row dy = row - r reads padded row y + dy + r = y + row
        rows = prefix[row : row + height]
        count += rows[:, r + w + 1 : r + w + 1 + width] - rows[:, r - w : r - w + width]
    size = sum(2 * w + 1 for w in half_widths)
    dilated, eroded = count > 0, count == size
    return dilated ^ eroded, eroded, ~dilated


def _logit(p: float) -> np.float32:
    """torch.logit(clamp(p, 1e-6, 1 - 1e-6)) of a float32 probability, in float32."""
    q = np.clip(np.float32(p), np.float32(_LOGIT_CLAMP), np.float32(1 - _LOGIT_CLAMP))
    return np.log(q / (np.float32(1) - q))


def foreground_scores(band: Array, core_in: Array, core_out: Array, p_core: float) -> Array:
    """(S, S) float32 l: logit(p_core) on core_in, logit(1 - p_core) on core_out, logit(0.5) = 0
    on the band. The unaries are (background, foreground) = (-l, l)."""
    xp = array_module(band)
    inside, outside, between = _logit(p_core), _logit(1.0 - p_core), _logit(0.5)  # 1 - p in double, as INSID3
    return xp.where(core_in, inside, xp.where(core_out, outside, between)).astype(xp.float32)


def guide_image(pixels: Array, mean, std) -> Array:
    """(3, S, S) RGB in [0, 1]: the normalised target denormalised in float32, then clipped."""
    require("guide_image", "pixels", pixels, ndim=3, dtype="float32")
    xp = array_module(pixels)
    mean = xp.asarray(np.asarray(mean, dtype=np.float32).reshape(3, 1, 1))
    std = xp.asarray(np.asarray(std, dtype=np.float32).reshape(3, 1, 1))
    return xp.clip(pixels * std + mean, xp.float32(0), xp.float32(1))


def softmax_pairs(scores: Array) -> Array:
    """Softmax over the last axis of (N, 2) float32, as torch's CPU kernel rounds it: exp of the
    shifted scores correctly rounded (computed in double), float32 sum and division."""
    xp = array_module(scores)
    shifted = scores - xp.maximum(scores[:, :1], scores[:, 1:])
    e = xp.exp(shifted.astype(xp.float64)).astype(xp.float32)
    return e / (e[:, :1] + e[:, 1:])


def sparsemax_pairs(z: Array) -> Array:
    """Sparsemax over the last axis of (N, 2) float32 by the library's sort-and-threshold steps:
    shift by the max, sort descending (hi = 0, lo), cumsum - 1 = (-1, lo - 1), support 2 when
    2 lo > lo - 1, tau = cumsum at the support / its size, output max(z - tau, 0)."""
    xp = array_module(z)
    # Element-wise max / min of the two columns: reductions over an axis of 2 are slow in NumPy.
    shifted = z - xp.maximum(z[:, :1], z[:, 1:])
    hi, lo = xp.maximum(shifted[:, 0], shifted[:, 1]), xp.minimum(shifted[:, 0], shifted[:, 1])
    one = xp.float32(1)
    first, second = hi - one, (hi + lo) - one
    tau = xp.where(xp.float32(2) * lo > second, second / xp.float32(2), first / one)
    return xp.maximum(shifted - tau[:, None], xp.float32(0))


def _rows_differ(a: Array, b: Array) -> Array:
    """(N,) flags of the rows of two (N, 2) arrays that differ in either column."""
    return (a[:, 0] != b[:, 0]) | (a[:, 1] != b[:, 1])


class _Pairwise:
    """P x = -(w_s K_s x + w_b K_b x) over both labels, on lattices built once for the image.
    Where the filters recompute only some pixels (the CPU's), so does this."""

    def __init__(self, guide: Array, params: CrfParameters) -> None:
        xp = array_module(guide)
        _, height, width = guide.shape
        spatial = spatial_positions(xp, height, width, params.gamma, params.precision)
        bilateral = bilateral_positions(guide, params.alpha, params.beta, params.precision)
        self.spatial = LatticeFilter(build_lattice(spatial, params.precision))
        self.bilateral = LatticeFilter(build_lattice(bilateral, params.precision))
        self.weights = (xp.float32(params.spatial_weight), xp.float32(params.bilateral_weight))

    def __call__(self, x: Array, previous: Array | None) -> tuple[Array, Array | None]:
        """(P x, the (N,) flags of the pixels where it may differ from `previous`, or None: all)."""
        xp = array_module(x)
        spatial_w, bilateral_w = self.weights
        spatial = self.spatial(x).astype(xp.float32, copy=False)
        bilateral = self.bilateral(x).astype(xp.float32, copy=False)
        flags_s, flags_b = self.spatial.recomputed, self.bilateral.recomputed
        if previous is None or flags_s is None or flags_b is None:
            return -(spatial_w * spatial + bilateral_w * bilateral), None
        changed = flags_s | flags_b
        rows = xp.nonzero(changed)[0]
        px = previous.copy()
        px[rows] = -(spatial_w * spatial[rows] + bilateral_w * bilateral[rows])
        return px, changed


def frank_wolfe(scores: Array, guide: Array, params: CrfParameters) -> Array:
    """(N, 2) float32 final x (background, foreground) of params.iterations fixed steps of size 1:
    x <- x + (sparsemax(-(P x - u)) - x), from x = softmax(u), u = (-l, l) row-major.

    A pixel's step can only differ from its previous one where P x or x itself changed, so each
    step updates those pixels only (all of them where the filters give no change flags)."""
    xp = array_module(scores, guide)
    flat = scores.reshape(-1)
    u = xp.stack([-flat, flat], axis=1)
    pairwise = _Pairwise(guide, params)
    x = softmax_pairs(u)
    px, px_changed = pairwise(x, None)
    moved = None  # (N,) flags of the pixels whose x changed in the last step; None: all
    for step in range(params.iterations):
        if px_changed is None or moved is None:
            s = sparsemax_pairs(-(px - u))
            stepped = x + (s - x)
            moved = _rows_differ(stepped, x)
            x = stepped
        else:
            rows = xp.nonzero(px_changed | moved)[0]
            x_rows = x[rows]
            s = sparsemax_pairs(-(px[rows] - u[rows]))
            stepped = x_rows + (s - x_rows)
            moved = xp.zeros(x.shape[0], dtype=bool)
            moved[rows] = _rows_differ(stepped, x_rows)
            x = x.copy()
            x[rows] = stepped
        if step < params.iterations - 1:
            px, px_changed = pairwise(x, px)
    return x


def crf_refine(mask: Array, guide: Array, params: CrfParameters) -> Array:
    """The refined (S, S) bool mask; guide (3, S, S) float32 RGB in [0, 1] (`guide_image`)."""
    require("crf_refine", "mask", mask, ndim=2, dtype="bool")
    require("crf_refine", "guide", guide, shape=(3, *mask.shape), dtype="float32")
    check_precision(params.precision)
    if params.iterations < 1:
        raise KernelInputError(f"crf_refine: iterations must be >= 1, got {params.iterations}")
    xp = array_module(mask, guide)
    band, core_in, core_out = band_regions(mask, params.radius)
    if not bool(band.any()):  # all core: nothing can change
        return mask.copy()
    x = frank_wolfe(foreground_scores(band, core_in, core_out, params.p_core), guide, params)
    eps = xp.float32(_LOG_EPS)
    foreground = (xp.log(x[:, 1] + eps) > xp.log(x[:, 0] + eps)).reshape(mask.shape)
    return core_in | (band & foreground)
