"""What a writer is given and what it promises (engine/jobs/outputs/__init__.py lists the formats):
the options of a job's output format, and the Writer protocol every format's writer follows.
Apart from the package, so that the writers import it without importing the package that opens
them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from insid3.engine.runtime.concepts import ConceptsResult
from insid3.engine.runtime.quality import QualityThresholds

FORMATS = ("png", "label-png", "coco", "coco-rle", "yolo-seg", "label-studio")
SEGMENTATIONS = ("rle", "polygon")


@dataclass(frozen=True)
class OutputOptions:
    """What a writer needs: the format, the concept names (label i + 1 is names[i]), and:
    per_concept_files: png masks named <stem>.<concept>.png (concepts given by name) rather than
    <stem>.png (one concept from --ref); overlay: also <stem>.overlay.jpg (png); instances: one
    COCO annotation per connected component; min_area: components below it are dropped (coco
    with instances, yolo-seg); segmentation: COCO's "rle" or "polygon"; tolerance: polygon
    simplification in pixels (0: every boundary vertex); min_score: a concept scoring below it
    is judged absent, its mask written empty; quality: when quality.csv flags a mask (quality.py)."""

    format: str
    names: tuple[str, ...]
    per_concept_files: bool = False
    overlay: bool = False
    instances: bool = False
    min_area: int = 0
    segmentation: str = "rle"
    tolerance: float = 1.0
    min_score: float | None = None
    quality: QualityThresholds = QualityThresholds()
    label_studio_root: str = "/data/local-files/?d="  # label-studio: what precedes a target's path

    def describe(self) -> str:
        """The options that change what is written, for the job manifest."""
        parts = [self.format]  # then the options that change this format's files, if any
        if self.format == "coco":
            parts.append(self.segmentation)
        if self.format in ("coco", "coco-rle") and self.instances:
            parts.append(f"instances>={self.min_area}px")
        if self.format == "yolo-seg":
            parts.append(f"components>={self.min_area}px")
        if self.format == "yolo-seg" or (self.format == "coco" and self.segmentation == "polygon"):
            parts.append(f"tolerance={self.tolerance:g}px")
        if self.format == "label-studio":
            parts.extend([self.segmentation, f"root={self.label_studio_root}"])
        if self.min_score is not None:  # it empties masks; the flags' thresholds change no mask
            parts.append(f"min-score={self.min_score!r}")
        return " ".join(parts)


class Writer(Protocol):
    def done(self, target: Path) -> bool:
        """Whether this target's outputs are complete (it is skipped on resume)."""
        ...

    def has_outputs(self) -> bool:
        """Whether the folder already holds outputs of this format (from any job)."""
        ...

    def start(self, *, fresh: bool) -> None:
        """Write the job-wide files (legend, data.yaml), once the folder is this job's. fresh: the
        folder held another job's outputs (--overwrite): forget every record of them."""
        ...

    def write(self, target: Path, result: ConceptsResult) -> None: ...

    def close(self) -> None: ...
