"""What the benchmark segments: the project's drawn scenes, or a folder of images.

Folder naming rule (`--images DIR`): `NAME.mask.png` is the mask of the image `NAME.<ext>`
(ext: jpg, jpeg, png, bmp, webp; any pixel > 0 is foreground) and makes that image a
reference; every other image in the folder is a target. References and targets are taken in
name order; `--shots S` uses the first S references.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insid3.engine.jobs.scenes import draw_scene
from insid3.errors import InputImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MASK_SUFFIX = ".mask.png"
SCENE_CONCEPT = 0  # references and targets share one concept, so the masks are not trivially empty
TARGET_SEED_OFFSET = 1000  # target scenes never repeat a reference scene


@dataclass(frozen=True)
class BenchInputs:
    """Reference shots as (image, mask) and the targets: arrays or paths, picklable."""

    shots: tuple[tuple[np.ndarray | Path, np.ndarray | Path], ...]
    targets: tuple[np.ndarray | Path, ...]
    source: str  # how they were made, for the report

    def __post_init__(self) -> None:
        if not self.shots or not self.targets:
            raise InputImageError("a benchmark needs at least one reference shot and one target")


def scene_inputs(shots: int, targets: int, size: tuple[int, int] = (480, 640)) -> BenchInputs:
    """Drawn scenes of one concept (engine/jobs/scenes.py): S reference scenes, T target scenes."""
    references = [draw_scene(seed=2 * s, size=size, concept=SCENE_CONCEPT) for s in range(shots)]
    scenes = [draw_scene(seed=TARGET_SEED_OFFSET + t, size=size, concept=SCENE_CONCEPT) for t in range(targets)]
    return BenchInputs(
        shots=tuple((scene.image, scene.mask) for scene in references),
        targets=tuple(scene.image for scene in scenes),
        source=f"drawn scenes (engine/jobs/scenes.py), {size[1]}x{size[0]}, concept {SCENE_CONCEPT}",
    )


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.endswith(MASK_SUFFIX)


def folder_inputs(folder: str | Path, shots: int) -> BenchInputs:
    """References and targets of a folder by the naming rule above; a clear error otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputImageError(f"--images {folder} is not a folder")
    images = sorted(p for p in folder.iterdir() if _is_image(p))
    masks = {p.name[: -len(MASK_SUFFIX)]: p for p in folder.iterdir() if p.name.endswith(MASK_SUFFIX)}
    references = [(p, masks[p.stem]) for p in images if p.stem in masks]
    targets = [p for p in images if p.stem not in masks]
    orphans = sorted(set(masks) - {p.stem for p in images})
    if orphans:
        raise InputImageError(f"--images {folder}: mask(s) without an image: {', '.join(orphans)}{MASK_SUFFIX}")
    if len(references) < shots:
        raise InputImageError(
            f"--images {folder}: {shots} shot(s) asked, {len(references)} reference(s) found "
            f"(a reference is NAME.jpg|png beside NAME{MASK_SUFFIX})"
        )
    if not targets:
        raise InputImageError(f"--images {folder}: no target images (every image there has a {MASK_SUFFIX} mask)")
    return BenchInputs(
        shots=tuple(references[:shots]),
        targets=tuple(targets),
        source=f"folder {folder}: {len(references)} reference(s), {len(targets)} target(s)",
    )
