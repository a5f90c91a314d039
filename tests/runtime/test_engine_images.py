"""Pre-processing (algorithm doc §1) and the errors bad images and masks get."""

import numpy as np
import pytest
from PIL import Image

from insid3.engine.runtime.images import load_mask, prepare_image, prepare_reference_mask, resize_mask
from insid3.errors import InputImageError, ReferenceMaskError
from insid3.format.bundle import IMAGENET_MEAN, IMAGENET_STD


def _image(h=30, w=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_prepare_image_matches_the_doc_transcription():
    array = _image()
    prepared = prepare_image(array, 64, IMAGENET_MEAN, IMAGENET_STD)
    resized = np.asarray(Image.fromarray(array).resize((64, 64), Image.BILINEAR), np.float32) / 255
    expected = ((resized - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    assert prepared.pixels.dtype == np.float32 and prepared.pixels.shape == (3, 64, 64)
    np.testing.assert_allclose(prepared.pixels, expected, atol=1e-6)
    assert prepared.original_size == (30, 50)


def test_paths_pil_and_arrays_give_the_same_pixels(tmp_path):
    array = _image()
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    a = prepare_image(array, 32, IMAGENET_MEAN, IMAGENET_STD).pixels
    b = prepare_image(path, 32, IMAGENET_MEAN, IMAGENET_STD).pixels
    c = prepare_image(Image.open(path), 32, IMAGENET_MEAN, IMAGENET_STD).pixels
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_grayscale_and_rgba_images_are_converted_to_rgb(tmp_path):
    Image.fromarray(_image()[..., 0]).save(tmp_path / "g.png")
    assert prepare_image(tmp_path / "g.png", 32, IMAGENET_MEAN, IMAGENET_STD).pixels.shape == (3, 32, 32)


@pytest.mark.parametrize(
    "mask", [np.array([[0, 1], [0, 0]]), np.array([[0, 255], [0, 0]], np.uint8), np.array([[False, True], [False, False]])]
)
def test_masks_any_positive_value_is_foreground(mask):
    np.testing.assert_array_equal(load_mask(mask), [[False, True], [False, False]])


def test_rgb_mask_file_is_foreground_where_any_channel_is_positive(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1, 2, 2] = 9
    Image.fromarray(rgb).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png").sum() == 1 and load_mask(tmp_path / "m.png")[1, 2]


@pytest.mark.parametrize("shape, resolution", [((20, 30), 16), ((480, 640), 1024), ((333, 500), 768)])
def test_resize_mask_is_torchs_nearest(shape, resolution):
    """The authors resize reference masks with F.interpolate(mode="nearest"), not PIL's NEAREST
    (which picks other source pixels: about a fifth of them differ at 480 x 640 -> 1024)."""
    torch = pytest.importorskip("torch")
    mask = np.random.default_rng(0).random(shape) > 0.5
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(mask).float()[None, None], size=(resolution, resolution), mode="nearest"
    )[0, 0].numpy() > 0.5
    np.testing.assert_array_equal(resize_mask(mask, resolution), expected)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputImageError, match="nope.jpg does not exist"):
        prepare_image(tmp_path / "nope.jpg", 32, IMAGENET_MEAN, IMAGENET_STD)


def test_corrupt_image_names_it(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputImageError, match="cannot read image .*bad.jpg"):
        prepare_image(bad, 32, IMAGENET_MEAN, IMAGENET_STD)


def test_wrong_array_layout_is_rejected():
    with pytest.raises(InputImageError, match="H x W x 3 uint8"):
        prepare_image(np.zeros((3, 8, 8), np.float32), 32, IMAGENET_MEAN, IMAGENET_STD)


def test_mask_of_another_size_names_both_sizes():
    with pytest.raises(InputImageError, match=r"is 40x30 \(WxH\) but its image is 50x30"):
        prepare_reference_mask(np.ones((30, 40), bool), (30, 50), 32)


def test_empty_mask_is_rejected():
    with pytest.raises(ReferenceMaskError, match="is empty"):
        prepare_reference_mask(np.zeros((30, 50), bool), (30, 50), 32)
