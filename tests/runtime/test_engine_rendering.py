"""Every image mode PIL opens becomes the RGB a person sees; masks read their colour, not alpha;
corrupt files of any kind give one InputImageError."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from insid3.engine.runtime.images import load_mask, load_rgb
from insid3.engine.runtime.rendering import mask_foreground, render_rgb
from insid3.errors import InputImageError

GRADIENT = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # (8, 64) 0..252


def saved(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def test_a_16_bit_png_renders_as_its_8_bit_picture(tmp_path):
    wide = Image.fromarray(GRADIENT.astype(np.uint16) * 257)  # mode I;16
    assert wide.mode == "I;16"
    path = saved(wide, tmp_path / "gray16.png")
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I")  # a 16-bit mode, which convert("RGB") clips to white
        assert (np.asarray(reopened.convert("RGB"))[:, 1:] == 255).all()
    rendered = np.asarray(load_rgb(path))
    np.testing.assert_array_equal(rendered, np.repeat(GRADIENT[..., None], 3, axis=2))


def test_32_bit_integer_and_float_gray(tmp_path):
    as_int = Image.fromarray(GRADIENT.astype(np.int32) * 257, mode="I")
    np.testing.assert_array_equal(np.asarray(render_rgb(as_int))[..., 0], GRADIENT)
    unit = Image.fromarray(GRADIENT.astype(np.float32) / 255.0, mode="F")
    np.testing.assert_array_equal(np.asarray(render_rgb(unit))[..., 1], GRADIENT)
    kelvin = Image.fromarray(GRADIENT.astype(np.float32) + 1000.0, mode="F")  # not [0, 1]: stretched
    stretched = np.asarray(render_rgb(kelvin))[..., 2]
    assert stretched.min() == 0 and stretched.max() == 255
    assert np.all(np.diff(stretched[0].astype(int)) >= 0)
    tiff = saved(Image.fromarray(GRADIENT.astype(np.float32) / 255.0, mode="F"), tmp_path / "f.tif")
    np.testing.assert_array_equal(np.asarray(load_rgb(tiff))[..., 0], GRADIENT)


def test_transparency_is_shown_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red stored under fully transparent pixels...
    rgba[:2, :, 3] = 255  # ...top half opaque
    rendered = np.asarray(render_rgb(Image.fromarray(rgba, mode="RGBA")))
    np.testing.assert_array_equal(rendered[:2], np.broadcast_to([200, 0, 0], (2, 4, 3)))
    np.testing.assert_array_equal(rendered[2:], np.full((2, 4, 3), 255))
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = 0
    np.testing.assert_array_equal(np.asarray(render_rgb(palette)), [[[255] * 3, [10, 20, 30]], [[10, 20, 30], [255] * 3]])
    la = Image.fromarray(np.dstack([np.full((2, 2), 40, np.uint8), np.array([[0, 255], [255, 0]], np.uint8)]), mode="LA")
    np.testing.assert_array_equal(np.asarray(render_rgb(la))[..., 0], [[255, 40], [40, 255]])


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "CMYK", "YCbCr"])
def test_modes_without_alpha_render_as_the_authors_convert(mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), mode="RGB").convert(mode)
    np.testing.assert_array_equal(np.asarray(render_rgb(image)), np.asarray(image.convert("RGB")))


def test_exif_orientation_is_not_applied(tmp_path):
    """Masks live on the stored pixel grid: a rotated photo keeps its stored (H, W)."""
    image = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = saved(image, tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(path).size == (30, 10)


def test_an_opaque_mask_with_alpha_is_read_by_its_colour(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black everywhere...
    rgba[1, 2, :3] = 255  # ...one white pixel
    mask = load_mask(saved(Image.fromarray(rgba, mode="RGBA"), tmp_path / "mask.png"))
    assert mask.sum() == 1 and mask[1, 2]
    cutout = np.zeros((4, 4, 4), np.uint8)
    cutout[0, :, 3] = 255  # colourless, painted as opacity
    assert mask_foreground(Image.fromarray(cutout, mode="RGBA")).sum() == 4


def test_a_16_bit_mask_counts_every_positive_value(tmp_path):
    values = np.zeros((4, 4), np.uint16)
    values[0, 0], values[3, 3] = 1, 65535
    mask = load_mask(saved(Image.fromarray(values), tmp_path / "mask16.png"))
    assert mask.sum() == 2 and mask[0, 0] and mask[3, 3]


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(GRADIENT).save(buffer, format="PNG")
    return buffer.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cut=st.integers(min_value=0, max_value=len(_png_bytes())),
    flips=st.lists(st.tuples(st.integers(0, len(_png_bytes()) - 1), st.integers(0, 255)), max_size=6),
    header=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"II*\x00", b"BM"]),
)
def test_damaged_files_give_only_input_image_errors(tmp_path, cut, flips, header):
    data = bytearray(_png_bytes())
    for offset, value in flips:
        data[offset] = value
    path = tmp_path / "damaged.img"
    path.write_bytes(header + bytes(data[:cut]))
    for read in (load_rgb, load_mask):
        try:
            result = read(path)
        except InputImageError as error:
            assert "\n" not in str(error) and str(path) in str(error)
        else:
            assert np.asarray(result).ndim in (2, 3)


def test_a_16_bit_target_is_segmented_as_its_8_bit_rendering(tmp_path, tiny_bundle):
    from insid3.engine import Segmenter
    from insid3.engine.jobs.scenes import scene_pairs

    reference, target = scene_pairs(1, size=(96, 128))[0]
    gray = np.asarray(Image.fromarray(target.image).convert("L"))
    eight = saved(Image.fromarray(gray), tmp_path / "target8.png")
    sixteen = saved(Image.fromarray(gray.astype(np.uint16) * 257), tmp_path / "target16.png")
    segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    segmenter.set_reference(reference.image, reference.mask)
    np.testing.assert_array_equal(segmenter.segment(sixteen), segmenter.segment(eight))
