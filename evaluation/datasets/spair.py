"""SPair-71k keypoint pairs as the authors' loader reads them (docs/correspondence.md, "SPair-71k").

    <data-root>/SPair-71k/Layout/large/test.txt             one pair name per line, file order
    <data-root>/SPair-71k/PairAnnotation/test/<pair>.json   src_kps, trg_kps, trg_bndbox, category
    <data-root>/SPair-71k/JPEGImages/<category>/<name>.jpg  the images

A pair name is `<id>-<source>-<target>:<category>`; the source image is its second '-' field,
the target its third cut at ':', each + ".jpg", in the folder of the JSON's `category` (not the
text after the colon). Keypoints are (x, y) original pixels, kept as stored (float32); the PCK
threshold is max(x2 - x1, y2 - y1) of the target box, in float32. Nothing is filtered. All
annotations are read when the dataset is built; images when a pair is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insid3.engine.runtime.images import load_rgb
from insid3.errors import InputImageError
from insid3.evaluation.datasets.base import DatasetError, require_file, require_folder

# The authors' class list: the 20 PASCAL VOC names (diningtable and sofa have no SPair pairs).
CATEGORIES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass(frozen=True)
class KeypointPair:
    name: str  # the pair name as listed, e.g. 000009-2008_001546-2009_000327:aeroplane
    category: str
    class_id: int  # index in CATEGORIES
    source_path: Path
    target_path: Path
    source_points: np.ndarray  # (K, 2) float32 (x, y) source pixels
    target_points: np.ndarray  # (K', 2) float32 (x, y) target pixels, the truth
    threshold: np.float32  # max side of the target bounding box, target pixels

    @property
    def points(self) -> int:
        """n_pts: how many keypoints are matched and scored (the source's count)."""
        return int(self.source_points.shape[0])


class SpairDataset:
    """The pairs of one split (the authors' evaluation reads `test`), in the list's order."""

    name = "spair"

    def __init__(self, data_root: str | Path, split: str = "test") -> None:
        self.root = require_folder(Path(data_root) / "SPair-71k", "the SPair-71k folder")
        listing = require_file(self.root / "Layout" / "large" / f"{split}.txt", f"the SPair-71k {split} list")
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if not names:
            raise DatasetError(f"{listing} lists no pairs")
        self.pairs = [self._pair(name, self.root / "PairAnnotation" / split / f"{name}.json") for name in names]

    def __len__(self) -> int:
        return len(self.pairs)

    def _pair(self, name: str, annotation: Path) -> KeypointPair:
        fields = name.split("-")
        if len(fields) < 3:
            raise DatasetError(f"pair name {name!r} is not <id>-<source>-<target>:<category>")
        data = _read_json(require_file(annotation, "the pair annotation"))
        try:
            category = data["category"]
            source_points = _points(data["src_kps"])
            target_points = _points(data["trg_kps"])
            x1, y1, x2, y2 = np.asarray(data["trg_bndbox"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"{annotation}: needs category, src_kps and trg_kps ([[x, y], ...]) and trg_bndbox "
                f"[x1, y1, x2, y2] ({type(exc).__name__}: {exc})"
            ) from None
        if category not in CATEGORIES:
            raise DatasetError(f"{annotation}: category {category!r} is none of the 20 PASCAL VOC classes")
        if len(target_points) < len(source_points):
            raise DatasetError(f"{annotation}: {len(source_points)} src_kps but only {len(target_points)} trg_kps")
        images = self.root / "JPEGImages" / category
        return KeypointPair(
            name=name, category=category, class_id=CATEGORIES.index(category),
            source_path=images / f"{fields[1]}.jpg", target_path=images / f"{fields[2].split(':')[0]}.jpg",
            source_points=source_points, target_points=target_points, threshold=max(x2 - x1, y2 - y1),
        )

    def load(self, path: Path) -> np.ndarray:
        """An image as H x W x 3 uint8 (what the engine prepares), DatasetError when unreadable."""
        try:
            return np.asarray(load_rgb(require_file(path, "the SPair-71k image")))
        except InputImageError as exc:
            raise DatasetError(str(exc)) from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a {type(data).__name__}, expected an object")
    return data


def _points(values) -> np.ndarray:
    points = np.asarray(values, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"expected a non-empty list of [x, y], got shape {points.shape}")
    return points
