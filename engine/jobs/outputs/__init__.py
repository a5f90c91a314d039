"""Where `insid3-segment` puts its results, one writer per `--format`:

    png         <stem>.png per target (one concept from --ref), or <stem>.<concept>.png per concept
    label-png   <stem>.png, an indexed PNG (0 background, i the i-th concept) + legend.json
    coco        masks.coco.json, COCO instances (RLE or polygons; --instances: one per component)
    coco-rle    the same, RLE (the single-reference format of earlier releases)
    yolo-seg    labels/<stem>.txt (Ultralytics segmentation rows) + data.yaml naming the classes
    label-studio  tasks.label-studio.json, Label Studio tasks with the masks as predictions

Every writer is safe to interrupt and resume: files are written to a temporary name and renamed
(a file that exists is complete: a target is done when its files exist and this job's log names
it), and COCO records are journalled as they are computed (coco.py). The job manifest
(engine/jobs/manifest.py) records the concepts and this writer's options, so a resumed job cannot
mix outputs of other inputs. A writer holds its folder from its opening to its close (no other job
writes there meanwhile), names targets by files.target_key (not by how their paths were typed),
and turns a failed write (a full disk) into one OutputWriteError line (engine/jobs/job_folder.py).
Beside every format, quality.csv holds each mask's quality record and flags (quality.py).
"""

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
        parts = [self.format]  # "png" and "coco-rle" alone, as earlier releases recorded them
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


def open_writer(folder: Path, options: OutputOptions) -> Writer:
    from insid3.engine.jobs.outputs.coco import CocoOutputs
    from insid3.engine.jobs.outputs.label_png import LabelPngOutputs
    from insid3.engine.jobs.outputs.label_studio import LabelStudioOutputs
    from insid3.engine.jobs.outputs.masks import PngOutputs
    from insid3.engine.jobs.outputs.yolo import YoloSegOutputs

    writers = {"png": PngOutputs, "label-png": LabelPngOutputs, "coco": CocoOutputs, "coco-rle": CocoOutputs,
               "yolo-seg": YoloSegOutputs, "label-studio": LabelStudioOutputs}
    from insid3.engine.jobs.outputs.quality import WithQuality

    if options.format not in writers:
        raise ValueError(f"unknown output format {options.format!r}: one of {', '.join(FORMATS)}")
    return WithQuality(writers[options.format](folder, options), folder, options)
