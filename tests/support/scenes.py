"""Drawn scenes (insid3.engine.jobs.scenes) saved as the files a job reads: an example's image and
its mask, and a folder of targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.jobs.scenes import draw_scene

EXAMPLE_SIZE = (120, 160)  # (H, W) of an example scene
TARGET_SIZE = (96, 128)


def save_example(folder: Path, name: str, seed: int, concept: int = 0, size: tuple[int, int] = EXAMPLE_SIZE) -> None:
    """<name>.png and <name>_mask.png (0 or 255): a drawn scene and the mask of its concept."""
    scene = draw_scene(seed, size, concept=concept)
    Image.fromarray(scene.image).save(folder / f"{name}.png")
    Image.fromarray(scene.mask.astype(np.uint8) * 255).save(folder / f"{name}_mask.png")


def one_concept_workspace(root: Path, targets: int) -> Path:
    """`root` holding ref.png and ref_mask.png (scene 1, concept 0) and targets/t0.jpg ... of the
    same concept (scenes 10, 11, ...; 96 x 128)."""
    save_example(root, "ref", seed=1)
    (root / "targets").mkdir()
    for index in range(targets):
        Image.fromarray(draw_scene(10 + index, TARGET_SIZE, concept=0).image).save(root / "targets" / f"t{index}.jpg")
    return root


def example_shot(seed: int, concept: int) -> tuple[np.ndarray, np.ndarray]:
    """A drawn example scene (120 x 160) as a shot: its image and its concept's mask."""
    scene = draw_scene(seed, EXAMPLE_SIZE, concept=concept)
    return scene.image, scene.mask
