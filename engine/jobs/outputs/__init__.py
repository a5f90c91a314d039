"""Where `insid3-segment` puts its results, one writer per `--format`:

    png         <stem>.png per target (one concept from --ref), or <stem>.<concept>.png per concept
    label-png   <stem>.png, an indexed PNG (0 background, i the i-th concept) + legend.json
    coco        masks.coco.json, COCO instances (RLE or polygons; --instances: one per component)
    coco-rle    the same, always RLE (--segmentation does not apply)
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

from pathlib import Path

from insid3.engine.jobs.outputs.options import FORMATS, SEGMENTATIONS, OutputOptions, Writer

__all__ = ["FORMATS", "SEGMENTATIONS", "OutputOptions", "Writer", "open_writer"]


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
