"""Drawn scenes (insid3.engine.jobs.scenes) saved as the files a job reads: an example's image and
its mask, and a folder of targets; and what the API finds in those targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.reference import Reference

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


def save_examples(root: Path, examples: tuple[tuple[str, int, int], ...]) -> None:
    """ex<i>.png and ex<i>_mask.png for the i-th (concept name, seed, drawn concept) of `examples`."""
    for index, (_, seed, concept) in enumerate(examples):
        save_example(root, f"ex{index}", seed, concept)


def api_results(segmenter, root: Path, examples: tuple[tuple[str, int, int], ...]) -> dict:
    """{target stem: ConceptsResult} of the API on root/targets for the concepts of `examples`
    (saved by save_examples; a name given again adds a shot), each shot encoded alone, as
    insid3-segment encodes them."""
    shots: dict[str, list] = {}
    for index, (name, _, _) in enumerate(examples):
        shots.setdefault(name, []).extend(segmenter.encode_shots([(root / f"ex{index}.png", root / f"ex{index}_mask.png")]))
    references = {name: Reference.from_shots(tuple(found), segmenter.fingerprint) for name, found in shots.items()}
    return {path.stem: segmenter.segment_concepts(path, references) for path in sorted((root / "targets").iterdir())}
