"""Decoded PIL images of any mode -> the 8-bit RGB a person sees, and masks -> foreground.

The authors decode with `Image.convert("RGB")`, which is right for 8-bit images (L, RGB, P
without transparency, CMYK, YCbCr, 1-bit) and wrong for others: PIL clips 16- and 32-bit
grayscale to 255 (a 16-bit PNG becomes all white) and drops alpha, showing whatever colour
fully transparent pixels happen to store. Here those modes are rendered as a viewer shows
them; for every 8-bit mode without alpha the result is `convert("RGB")`, bit for bit.

- I;16, I;16L, I;16B, I;16N (16-bit gray) and I (32-bit integer gray): the 16-bit range
  [0, 65535] maps linearly onto [0, 255] (values outside it are clipped).
- F (32-bit float gray): values in [0, 1] map onto [0, 255]; any other range is stretched
  from its minimum to its maximum (a constant image becomes black).
- Alpha (RGBA, LA, PA, La, RGBa, P with a transparency entry): composited over white, as an
  image viewer or a browser page shows a transparent image.
- EXIF orientation is NOT applied: masks are read and written on the stored pixel grid, as the
  authors, COCO and most dataset loaders do; a rotated photo is segmented as stored.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

GRAY_16_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
WHITE = (255, 255, 255)


def _gray_to_8_bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        if not (low >= 0.0 and high <= 1.0):
            values = (values - low) / (high - low) if high > low else np.zeros_like(values)
        scaled = np.nan_to_num(values, nan=0.0) * 255.0
    else:
        scaled = values / 257.0  # 65535 -> 255 exactly
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )


def render_rgb(image: Image.Image) -> Image.Image:
    """The 8-bit RGB rendering of a decoded image of any PIL mode (module docstring)."""
    if image.mode in GRAY_16_BIT or image.mode == "F":
        return _gray_to_8_bit(image).convert("RGB")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def mask_foreground(image: Image.Image) -> np.ndarray:
    """Bool (H, W): pixels whose stored value is > 0 in any colour channel.

    An alpha channel never makes a pixel foreground on its own (an opaque black background is
    background); only a mask whose colour channels are all zero is read from its alpha instead
    (a cut-out painted as transparency). Palette masks are read by index: index 0 is background.
    """
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        bands = np.asarray(image)
        colour, alpha = bands[..., :-1], bands[..., -1]
        if not colour.any():
            return alpha > 0
        return (colour > 0).any(axis=2) & (alpha > 0)
    array = np.asarray(image)
    return (array > 0).any(axis=2) if array.ndim == 3 else array > 0
