"""Uploaded bytes -> a decoded PIL image, with the pixel limit checked before decoding.

PIL reads the header lazily, so an image's size is known before its pixels are decompressed:
a 100-megapixel PNG of a few kilobytes is refused (413) without allocating its pixels. The 413
always quotes the server's own limit (max_image_pixels), also for the images so large that PIL
will not open them (ServeSettings caps max_image_pixels at PIL's ceiling).
"""

from __future__ import annotations

import io
import warnings

from fastapi import UploadFile
from fastapi.concurrency import run_in_threadpool
from PIL import Image, UnidentifiedImageError

from insid3.engine.runtime.images import load_mask
from insid3.engine.serve.errors import BadRequestError, PayloadTooLargeError
from insid3.engine.serve.settings import pil_pixel_ceiling
from insid3.errors import ReferenceMaskError


def decode_upload(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Decode one uploaded image; errors name the form field and the problem."""
    if not data:
        raise BadRequestError(f"{field}: the upload is empty")
    try:
        with warnings.catch_warnings():
            # Our own limit replaces PIL's DecompressionBombWarning; its hard error still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLargeError(
                    f"{field}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
                )
            image.load()
    except UnidentifiedImageError:
        raise BadRequestError(
            f"{field}: cannot decode the upload as an image ({len(data)} bytes, not a format PIL reads)"
        ) from None
    except Image.DecompressionBombError:  # PIL refuses to open it at all: far over our limit (settings.py)
        raise PayloadTooLargeError(
            f"{field}: the image has more than {pil_pixel_ceiling()} pixels, which exceeds the limit of {max_pixels}"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise BadRequestError(f"{field}: the image data is corrupt: {exc}") from None
    return image


def check_mask(mask: Image.Image, image_size: tuple[int, int], index: int) -> None:
    """Refuse a shot's mask early, naming its field: size mismatch (400) or no foreground (422).

    The engine checks again when it encodes; checking here lets the message say which shot.
    """
    if mask.size != image_size:
        raise BadRequestError(
            f"mask[{index}] is {mask.width}x{mask.height} but image[{index}] is {image_size[0]}x{image_size[1]}: "
            "a mask must have its image's size"
        )
    if not load_mask(mask).any():
        raise ReferenceMaskError(f"mask[{index}] is empty: no pixel is > 0")


async def read_upload(upload: UploadFile, field: str, max_pixels: int) -> tuple[bytes, Image.Image]:
    """An uploaded file's bytes and its decoded image (decoded off the event loop)."""
    data = await upload.read()
    return data, await run_in_threadpool(decode_upload, data, field, max_pixels)
