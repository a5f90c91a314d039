"""Keypoint-matching kernels (kernels/correspondence.py) against the torch transcription of the
doc (insid3.authors_way.correspondence) and against the doc's own numeric examples."""

import numpy as np
import pytest

from insid3 import kernels
from insid3.kernels.arrays import KernelInputError, to_numpy

torch = pytest.importorskip("torch")
from insid3.authors_way import correspondence as aw  # noqa: E402  (needs torch)

GRID = (48, 48)


def kernel_soft_argmax(similarity: np.ndarray, xp=np) -> np.ndarray:
    matches, _ = kernels.gaussian_soft_argmax(xp.asarray(similarity))
    return to_numpy(matches)


def oracle_soft_argmax(similarity: np.ndarray) -> np.ndarray:
    return aw.soft_argmax(torch.from_numpy(similarity)).numpy()


IMPLEMENTATIONS = {"kernel": kernel_soft_argmax, "transcription": oracle_soft_argmax}


def single_peak(strength: float, x: int = 10, y: int = 20, shape=GRID) -> np.ndarray:
    similarity = np.zeros((1, *shape), np.float32)
    similarity[0, y, x] = strength
    return similarity


# ------------------------------------------------------------------ snapping
@pytest.mark.parametrize("snap", ["kernel", "transcription"])
def test_snapping_rounds_half_to_even_scales_x_by_width_and_clamps(snap):
    """The doc's pair-1 source (96 x 64 at a 48 x 48 grid) and the W = 480 tie."""
    def cells(points, size):
        points = np.asarray(points, np.float32)
        if snap == "kernel":
            return kernels.snap_points(points, size, GRID).tolist()
        return aw.snap_keypoints(torch.from_numpy(points), size, GRID).tolist()

    # (5, 20): x' 2.5 -> 2 (even), y' 15; (7, 50): 3.5 -> 4, 37.5 -> 38; (95, 63): 47.5 -> 48 -> 47, 47.25 -> 47.
    assert cells([[5, 20], [7, 50], [95, 63]], (64, 96)) == [[2, 15], [4, 38], [47, 47]]
    assert cells([[5, 0], [15, 0], [-3, 0]], (100, 480)) == [[0, 0], [2, 0], [0, 0]]  # 0.5 -> 0, 1.5 -> 2


def test_snapping_equals_the_transcription_on_many_ties(xp):
    rng = np.random.default_rng(0)
    for height, width in [(64, 96), (90, 60), (50, 100), (333, 500), (48, 48)]:
        # Integer and half-integer pixels: ties are frequent at these sizes.
        points = (rng.integers(0, 2 * max(height, width), size=(200, 2)) / 2).astype(np.float32)
        points[:, 0] = np.minimum(points[:, 0], width)
        points[:, 1] = np.minimum(points[:, 1], height)
        expected = aw.snap_keypoints(torch.from_numpy(points), (height, width), GRID).numpy()
        ours = to_numpy(kernels.snap_points(xp.asarray(points), (height, width), GRID))
        np.testing.assert_array_equal(ours, expected)


# ------------------------------------------------------------------ soft-argmax
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("strength, expected", [(0.8, (10.000, 20.000)), (0.5, (10.11, 20.03)),
                                                 (0.3, (17.57, 21.96)), (0.1, (23.43, 23.48))])
def test_a_weak_peak_drifts_toward_the_grid_centre(name, strength, expected):
    """Every cell takes part (a window around the peak would keep all four at (10, 20))."""
    found = IMPLEMENTATIONS[name](single_peak(strength))[0]
    np.testing.assert_allclose(found, expected, atol=6e-3)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_a_neighbouring_peak_pulls_the_match(name):
    similarity = single_peak(0.8)
    similarity[0, 20, 11] = 0.76
    x, y = IMPLEMENTATIONS[name](similarity)[0]
    assert x == pytest.approx(10.23, abs=5e-3) and y == pytest.approx(20.0, abs=1e-3)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_the_largest_coordinate_is_w_minus_1(name):
    x, y = IMPLEMENTATIONS[name](single_peak(1.0, x=47, y=47))[0]
    assert 46.99 < x <= 47.0 and 46.99 < y <= 47.0


def test_soft_argmax_equals_the_transcription_on_random_maps(xp):
    rng = np.random.default_rng(1)
    for shape in [(5, 48, 48), (3, 14, 20), (2, 64, 64)]:
        similarity = rng.uniform(-1, 1, size=shape).astype(np.float32)
        similarity[0] *= 0.2  # a weak map too
        expected = oracle_soft_argmax(similarity)
        matches, peak = kernels.gaussian_soft_argmax(xp.asarray(similarity))
        np.testing.assert_allclose(to_numpy(matches), expected, atol=2e-4)
        np.testing.assert_array_equal(to_numpy(peak), similarity.reshape(shape[0], -1).max(axis=1))
        assert to_numpy(matches).dtype == np.float32


def test_soft_argmax_takes_any_leading_shape(xp):
    similarity = np.random.default_rng(2).uniform(-1, 1, size=(2, 3, 10, 12)).astype(np.float32)
    matches, peak = kernels.gaussian_soft_argmax(xp.asarray(similarity))
    assert matches.shape == (2, 3, 2) and peak.shape == (2, 3)
    flat, _ = kernels.gaussian_soft_argmax(xp.asarray(similarity.reshape(6, 10, 12)))
    np.testing.assert_allclose(to_numpy(matches).reshape(6, 2), to_numpy(flat), atol=1e-6)


# ------------------------------------------------------------------ similarity and pixels
def test_similarity_maps_equal_the_transcription(xp):
    rng = np.random.default_rng(3)
    grid = (6, 9)
    source, target = (rng.normal(size=(54, 16)).astype(np.float32) for _ in range(2))
    cells = np.array([[0, 0], [8, 5], [3, 2]], np.int64)
    expected = aw.keypoint_similarity(torch.from_numpy(source), torch.from_numpy(target), torch.from_numpy(cells), grid)
    descriptors = kernels.source_descriptors(xp.asarray(source), xp.asarray(cells), grid)
    np.testing.assert_array_equal(to_numpy(descriptors)[1], source[5 * 9 + 8])  # row v = 5, column u = 8
    ours = kernels.keypoint_similarity(descriptors, xp.asarray(target), grid)
    np.testing.assert_allclose(to_numpy(ours), expected.numpy(), rtol=1e-5, atol=1e-5)
    batched = kernels.keypoint_similarity(descriptors, xp.asarray(np.stack([target] * 2)), grid)
    assert batched.shape == (2, 3, 6, 9)
    np.testing.assert_allclose(to_numpy(batched[1]), to_numpy(ours), atol=1e-6)


def test_patch_units_map_to_top_left_pixel_corners(xp):
    matches = np.array([[0.0, 0.0], [47.0, 47.0], [10.5, 2.25]], np.float32)
    ours = to_numpy(kernels.patch_to_pixels(xp.asarray(matches), (50, 100), GRID))
    expected = aw.to_target_pixels(torch.from_numpy(matches), (50, 100), GRID).numpy()
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours[1], [47 * np.float32(100 / 48), 47 * np.float32(50 / 48)])
    assert ours[1, 0] < 100 - 100 / 48 / 2  # never the last patch's centre


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(KernelInputError, match="points must be float32"):
        kernels.snap_points(np.zeros((2, 2)), (10, 10), GRID)
    with pytest.raises(KernelInputError, match=r"points must have shape \(\*, 2\)"):
        kernels.snap_points(np.zeros((2, 3), np.float32), (10, 10), GRID)
    with pytest.raises(KernelInputError, match="must hold the N = 9 patches"):
        kernels.source_descriptors(np.zeros((10, 4), np.float32), np.zeros((1, 2), np.int64), (3, 3))
    with pytest.raises(KernelInputError, match=r"must hold \(N = 9, D = 4\)"):
        kernels.keypoint_similarity(np.zeros((1, 4), np.float32), np.zeros((9, 5), np.float32), (3, 3))
    with pytest.raises(KernelInputError, match="similarity must be float32"):
        kernels.gaussian_soft_argmax(np.zeros((1, 4, 4)))
