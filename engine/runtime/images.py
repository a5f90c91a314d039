"""Reading and pre-processing images and masks exactly as algorithm doc §1 says.

An image is a path, a PIL image or an H x W x 3 uint8 array; a mask is a path, a PIL image or an
H x W array (bool, 0/1 or 0-255: any positive value is foreground).

Size policy: insid3 reads every image below PIL's hard limit (2 x Image.MAX_IMAGE_PIXELS,
178,956,970 pixels by default) and refuses larger ones in one line (DecompressionBombError).
PIL's DecompressionBombWarning for images between half that and the limit is switched off when
this module is imported: it says nothing the user can act on, and would break a progress bar.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from insid3.engine.runtime.rendering import mask_foreground, render_rgb
from insid3.errors import InputImageError, ReferenceMaskError
from insid3.kernels.resize import resize_nearest

ImageLike = Union[str, Path, Image.Image, np.ndarray]
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # the size policy above


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the backbone: normalised CHW pixels plus its original size."""

    pixels: np.ndarray  # (3, R, R) float32, ImageNet-normalised
    original_size: tuple[int, int]  # (H, W)
    name: str = ""


def _describe(source: ImageLike) -> str:
    return str(source) if isinstance(source, (str, Path)) else type(source).__name__


def _open(source: ImageLike, what: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputImageError(f"{what} {path} does not exist")
        return _decode(path, what, str(path))
    raise InputImageError(
        f"{what} must be a path, a PIL image or a numpy array, got {type(source).__name__}"
    )


def _decode(file: Path | io.BytesIO, what: str, name: str) -> Image.Image:
    if (file.stat().st_size if isinstance(file, Path) else file.getbuffer().nbytes) == 0:
        raise InputImageError(f"cannot read {what} {name}: empty file (0 bytes)")
    try:
        with Image.open(file) as img:
            img.load()
            return img.copy()
    except UnidentifiedImageError:
        raise InputImageError(f"cannot read {what} {name}: not an image format PIL reads") from None
    except Image.DecompressionBombError as exc:
        raise InputImageError(f"cannot read {what} {name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - PIL's decoders raise many types on corrupt data
        raise InputImageError(f"cannot read {what} {name}: corrupt or truncated ({exc.__class__.__name__}: {exc})") from None


def decode_file_bytes(data: bytes, name: str, what: str = "image") -> Image.Image:
    """The PIL image in a file's bytes (read elsewhere: another machine, an object store), with
    the one-line errors a path gets; `name` says which file in them."""
    return _decode(io.BytesIO(data), what, name)


def load_rgb(source: ImageLike) -> Image.Image:
    """Decode to the 8-bit RGB a person sees (doc §1; engine/runtime/rendering.py says where this differs
    from the authors' convert('RGB'))."""
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise InputImageError(
                f"an image array must be H x W x 3 uint8, got {source.dtype} {source.shape}"
            )
        return Image.fromarray(source, mode="RGB")
    return render_rgb(_open(source, "image"))


def load_mask(source: ImageLike) -> np.ndarray:
    """A bool (H, W) mask: every pixel > 0 (in any colour channel) is foreground."""
    if not isinstance(source, np.ndarray):
        return mask_foreground(_open(source, "mask"))
    array = source
    if array.ndim == 3:
        array = array.any(axis=2) if array.dtype == bool else (array > 0).any(axis=2)
    if array.ndim != 2:
        raise InputImageError(f"a mask must be H x W, got shape {array.shape}")
    return array > 0


def normalise_pixels(
    image: Image.Image, resolution: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """PIL bilinear resize to R x R (aspect not kept), /255, per-channel normalise, CHW float32."""
    resized = image.resize((resolution, resolution), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def prepare_image(
    source: ImageLike, resolution: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> PreparedImage:
    image = load_rgb(source)
    pixels = normalise_pixels(image, resolution, mean, std)
    return PreparedImage(pixels=pixels, original_size=(image.height, image.width), name=_describe(source))


def resize_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """The reference mask at R x R by torch's nearest rule (F.interpolate(mode="nearest"), as the
    authors' load_mask; PIL's NEAREST picks other source pixels), then > 0.5 (doc §1)."""
    return resize_nearest(np.asarray(mask, dtype=bool), (resolution, resolution))


def prepare_reference_mask(mask_source: ImageLike, image_size: tuple[int, int], resolution: int) -> np.ndarray:
    """Load a reference mask, check it against its image's (H, W), return it bool at R x R."""
    mask = load_mask(mask_source)
    if mask.shape != tuple(image_size):
        raise InputImageError(
            f"mask {_describe(mask_source)} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
            f"{image_size[1]}x{image_size[0]}: a reference mask must have its image's size"
        )
    if not mask.any():
        raise ReferenceMaskError(f"reference mask {_describe(mask_source)} is empty: no pixel is > 0")
    resized = resize_mask(mask, resolution)
    if not resized.any():
        raise ReferenceMaskError(
            f"reference mask {_describe(mask_source)} vanishes when resized to {resolution}x{resolution}"
        )
    return resized


def overlay_mask(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The RGB image with the mask's pixels tinted magenta at half opacity, for eyeballing masks."""
    tinted = image.astype(np.float32)
    tinted[mask] = 0.5 * tinted[mask] + 0.5 * np.array([255, 0, 160], np.float32)
    return Image.fromarray(tinted.astype(np.uint8))
