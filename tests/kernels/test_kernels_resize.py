"""Doc §5 and §9 resizing: resize_bilinear / resize_nearest against torch's F.interpolate,
downsample_mask's three fallbacks, upsample_mask's two steps."""

import numpy as np
import pytest
from support import kernel_oracle as oracle
from support.kernel_oracle import host

from insid3.errors import ReferenceMaskError
from insid3.kernels import downsample_mask, upsample_mask
from insid3.kernels.arrays import KernelInputError
from insid3.kernels.resize import resize_bilinear, resize_nearest, threshold_bilinear

pytest.importorskip("torch", reason="torch is needed for the F.interpolate oracle")


def _random_sizes(seed, count):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        ih, iw = rng.integers(1, 70, 2)
        oh, ow = rng.integers(1, 260, 2)
        yield rng, (int(ih), int(iw)), (int(oh), int(ow))


def test_bilinear_matches_torch_on_random_sizes(xp):
    for rng, in_hw, out_hw in _random_sizes(0, 120):
        binary = rng.random(in_hw) < 0.5
        ours = host(resize_bilinear(xp.asarray(binary), out_hw))
        expected = oracle.interpolate(binary, out_hw, "bilinear")
        assert ours.dtype == np.float32 and ours.shape == out_hw
        np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-7)
        np.testing.assert_array_equal(ours > 0.5, expected > 0.5, err_msg=f"{in_hw} -> {out_hw}")


def test_bilinear_matches_torch_on_real_values(xp):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((37, 53)).astype(np.float32)
    for out_hw in [(37, 53), (74, 106), (16, 16), (100, 7), (1, 1)]:
        np.testing.assert_allclose(
            host(resize_bilinear(xp.asarray(values), out_hw)),
            oracle.interpolate(values, out_hw, "bilinear"), rtol=1e-6, atol=1e-6,
        )


def test_nearest_matches_torch(xp):
    for rng, in_hw, out_hw in _random_sizes(2, 120):
        binary = rng.random(in_hw) < 0.5
        ours = host(resize_nearest(xp.asarray(binary), out_hw))
        np.testing.assert_array_equal(ours, oracle.interpolate(binary, out_hw, "nearest") > 0.5)


@pytest.mark.parametrize("resolution, grid, original", [(64, 4, (48, 80)), (128, 8, (97, 131)), (768, 48, (480, 640)), (1024, 64, (1080, 1920))])
def test_upsample_mask_matches_two_step_torch(xp, resolution, grid, original):
    rng = np.random.default_rng(resolution)
    patch = rng.random((grid, grid)) < 0.3
    ours = host(upsample_mask(xp.asarray(patch), resolution, original))
    assert ours.dtype == bool and ours.shape == original
    np.testing.assert_array_equal(ours, oracle.upsample_mask(patch, resolution, original))


def test_upsample_of_empty_mask_is_empty(xp):
    assert not host(upsample_mask(xp.zeros((8, 8), dtype=bool), 128, (50, 70))).any()


def _blob_mask(rng, size):
    mask = np.zeros((size, size), dtype=bool)
    y, x = rng.integers(0, size, 2)
    r = rng.integers(1, size // 2)
    yy, xx = np.mgrid[0:size, 0:size]
    mask[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = True
    return mask


def test_downsample_mask_matches_reference_on_blobs(xp):
    rng = np.random.default_rng(3)
    for _ in range(40):
        mask = _blob_mask(rng, 128)
        np.testing.assert_array_equal(host(downsample_mask(xp.asarray(mask), 8)), oracle.downsample_mask(mask, 8, 8))


def test_downsample_mask_bilinear_path_touching_the_border(xp):
    mask = np.zeros((64, 64), dtype=bool)
    mask[:, :16] = True  # the whole left column of patches, on the image border
    down = host(downsample_mask(xp.asarray(mask), (4, 4)))
    expected = np.zeros((4, 4), dtype=bool)
    expected[:, 0] = True
    np.testing.assert_array_equal(down, expected)
    np.testing.assert_array_equal(down, oracle.downsample_mask(mask, 4, 4))


def test_downsample_mask_nearest_fallback(xp):
    # One pixel on the nearest sampling grid (multiples of 16) but away from the bilinear taps
    # (pixels 7 and 8 of each patch): bilinear is empty, nearest keeps patch (1, 2).
    mask = np.zeros((64, 64), dtype=bool)
    mask[16, 32] = True
    assert not (oracle.interpolate(mask, (4, 4), "bilinear") > 0.5).any()
    down = host(downsample_mask(xp.asarray(mask), 4))
    assert down.sum() == 1 and down[1, 2]
    np.testing.assert_array_equal(down, oracle.downsample_mask(mask, 4, 4))


def test_downsample_mask_centroid_fallback(xp):
    # A thin diagonal pair of pixels avoiding both sampling grids: only the centroid is left.
    mask = np.zeros((64, 64), dtype=bool)
    mask[37, 50] = True
    mask[41, 54] = True  # centroid (39, 52) -> patch (2, 3)
    down = host(downsample_mask(xp.asarray(mask), 4))
    assert down.sum() == 1 and down[2, 3]
    np.testing.assert_array_equal(down, oracle.downsample_mask(mask, 4, 4))


def test_downsample_mask_one_patch(xp):
    mask = np.zeros((96, 96), dtype=bool)
    mask[32:48, 48:64] = True  # exactly patch (2, 3) of a 6 x 6 grid
    down = host(downsample_mask(xp.asarray(mask), 6))
    assert down.sum() == 1 and down[2, 3]


def test_downsample_mask_empty_raises(xp):
    with pytest.raises(ReferenceMaskError, match="empty"):
        downsample_mask(xp.zeros((32, 32), dtype=bool), 2)


def test_bad_inputs_name_the_array(xp):
    with pytest.raises(KernelInputError, match=r"downsample_mask: mask must be bool, got shape \(32, 32\) dtype float32"):
        downsample_mask(xp.zeros((32, 32), dtype=xp.float32), 2)
    with pytest.raises(KernelInputError, match=r"not a whole number of equal patches"):
        downsample_mask(xp.ones((30, 32), dtype=bool), 4)
    with pytest.raises(KernelInputError, match=r"upsample_mask: patch_mask must be 2-D, got shape \(16,\)"):
        upsample_mask(xp.zeros(16, dtype=bool), 64, (10, 10))
    with pytest.raises(KernelInputError, match="output size must be positive"):
        resize_bilinear(xp.zeros((4, 4), dtype=xp.float32), (0, 3))


def _sparse_masks(seed, count):
    """Small foreground boxes, single pixels and corner blobs at random sizes (both directions)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        ih, iw = (int(v) for v in rng.integers(1, 60, 2))
        oh, ow = (int(v) for v in rng.integers(1, 200, 2))
        mask = np.zeros((ih, iw), dtype=bool)
        kind = i % 4
        if kind == 0:  # one box
            y, x = rng.integers(0, ih), rng.integers(0, iw)
            mask[y : y + rng.integers(1, ih + 1), x : x + rng.integers(1, iw + 1)] = True
        elif kind == 1:  # one pixel
            mask[rng.integers(0, ih), rng.integers(0, iw)] = True
        elif kind == 2:  # a corner pixel
            mask[-(i % 2), -((i // 2) % 2)] = True
        else:  # a sparse scatter
            mask = rng.random((ih, iw)) < 0.05
        yield mask, (oh, ow)


def test_threshold_bilinear_equals_the_full_resize_and_torch(xp):
    """Only the rows and columns reaching the foreground's box are interpolated: decisions must be
    those of the full resize (and torch's) everywhere, including shrinking past a lone pixel."""
    for mask, out_hw in _sparse_masks(5, 300):
        ours = host(threshold_bilinear(xp.asarray(mask), out_hw))
        assert ours.dtype == bool and ours.shape == out_hw
        np.testing.assert_array_equal(ours, host(resize_bilinear(xp.asarray(mask), out_hw)) > 0.5)
        np.testing.assert_array_equal(ours, oracle.interpolate(mask, out_hw, "bilinear") > 0.5,
                                      err_msg=f"{mask.shape} -> {out_hw}")
    assert not host(threshold_bilinear(xp.zeros((5, 7), dtype=bool), (30, 20))).any()


@pytest.mark.parametrize("grid, resolution, original", [(48, 768, (480, 640)), (64, 1024, (1080, 1920)), (16, 256, (100, 90))])
def test_upsample_mask_of_objects_matches_torch(xp, grid, resolution, original):
    rng = np.random.default_rng(grid)
    for _ in range(6):
        patch = np.zeros((grid, grid), dtype=bool)
        y, x = rng.integers(0, grid, 2)
        patch[y : y + rng.integers(1, grid // 2), x : x + rng.integers(1, grid // 2)] = True
        patch[rng.integers(0, grid), rng.integers(0, grid)] = True  # a stray patch elsewhere
        np.testing.assert_array_equal(host(upsample_mask(xp.asarray(patch), resolution, original)),
                                      oracle.upsample_mask(patch, resolution, original))
