"""Scenes the project draws itself: the embedded default for demos, tests and benchmarks.

Each scene is a textured background with a few distractor shapes and one instance of a
*concept* (a shape with its own colour and stripe texture) whose ground-truth mask is known.
Pairs of scenes share the concept at other positions and sizes, so a reference from one scene
should segment the concept in the other. With --random-init weights the backbone sees only
colour and texture: these scenes exercise the machinery, they do not measure quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CONCEPTS = (
    # (fill colour, stripe colour, shape)
    ((220, 40, 40), (250, 200, 60), "ellipse"),
    ((40, 90, 220), (230, 230, 240), "rectangle"),
    ((40, 170, 70), (20, 60, 30), "triangle"),
)


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool: the concept's pixels
    concept: int


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    base = rng.integers(90, 170, size=3)
    noise = rng.normal(0, 12, size=(height, width, 1))
    yy, xx = np.mgrid[0:height, 0:width]
    gradient = (yy / height * 30 - 15)[..., None]
    pixels = np.clip(base + noise + gradient + 0 * xx[..., None], 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _shape_box(rng: np.random.Generator, height: int, width: int, scale: float) -> tuple[int, int, int, int]:
    side = int(min(height, width) * scale)
    x0 = int(rng.integers(0, max(1, width - side)))
    y0 = int(rng.integers(0, max(1, height - side)))
    return x0, y0, x0 + side, y0 + int(side * rng.uniform(0.7, 1.0))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "ellipse":
        draw.ellipse(box, fill=fill)
    elif shape == "rectangle":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _stripes(size: tuple[int, int], colour, period: int) -> Image.Image:
    width, height = size
    xx = np.arange(width)[None, :] + np.arange(height)[:, None]
    on = (xx // period) % 2 == 0
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[on] = (*colour, 255)
    return Image.fromarray(pixels, mode="RGBA")


def draw_scene(seed: int, size: tuple[int, int] = (480, 640), concept: int = 0) -> Scene:
    """One scene of (H, W) = size holding `concept` once and two distractors of other concepts."""
    height, width = size
    rng = np.random.default_rng(seed)
    image = _background(rng, height, width)
    draw = ImageDraw.Draw(image)
    for other in (c for c in range(len(CONCEPTS)) if c != concept):
        fill, _, shape = CONCEPTS[other]
        _draw_shape(draw, shape, _shape_box(rng, height, width, rng.uniform(0.15, 0.25)), fill)
    fill, stripe, shape = CONCEPTS[concept]
    box = _shape_box(rng, height, width, rng.uniform(0.3, 0.45))
    silhouette = Image.new("L", (width, height), 0)
    _draw_shape(ImageDraw.Draw(silhouette), shape, box, 255)
    textured = Image.new("RGB", (width, height), fill)
    textured.paste(_stripes((width, height), stripe, period=12), (0, 0), _stripes((width, height), stripe, 12))
    image.paste(textured, (0, 0), silhouette)
    return Scene(image=np.asarray(image), mask=np.asarray(silhouette) > 0, concept=concept)


def scene_pairs(count: int, size: tuple[int, int] = (480, 640), seed: int = 0) -> list[tuple[Scene, Scene]]:
    """(reference, target) pairs sharing a concept, cycling through the concepts."""
    pairs = []
    for i in range(count):
        concept = i % len(CONCEPTS)
        pairs.append(
            (draw_scene(seed + 2 * i, size, concept), draw_scene(seed + 2 * i + 1, size, concept))
        )
    return pairs
