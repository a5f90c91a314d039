"""What `insid3-match` writes per target, and how it is read back.

    <stem>.json        MatchRecord: the reference, the target, the options and every match; one
                       convention for every pair of numbers, stated in the file's "coordinates":
                       points [x, y] in pixels of their image (x to the right, y down, from its
                       top-left corner), sizes [width, height]; the web page's downloads are the
                       same file
    <stem>.csv         (--csv) index, source_x, source_y, target_x, target_y, peak_similarity
    <stem>.match.jpg   (--visualize) reference | target side by side, a line per keypoint

Each file is written to a temporary name and renamed (job_folder.write_atomically); the JSON
is written last, so a target whose JSON exists is complete and is skipped on resume. The folder
is held by the job from the writer's opening to its close (job_folder.hold_folder).
"""

from __future__ import annotations

import colorsys
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from insid3.engine.jobs.job_folder import hold_folder, release_folder, write_atomically
from insid3.engine.jobs.manifest import MANIFEST_FILE
from insid3.engine.runtime.correspondence import Correspondences

CSV_COLUMNS = ("index", "source_x", "source_y", "target_x", "target_y", "peak_similarity")
PICTURE_HEIGHT_LIMIT = 1024  # the side-by-side picture's height at most, in pixels
COORDINATES = ("points [x, y] in pixels of their image, x to the right and y down from its top-left corner; "
               "sizes [width, height]")


@dataclass(frozen=True)
class MatchRecord:
    """One target's matches, as stored in <stem>.json."""

    reference: str
    reference_size: tuple[int, int]  # (H, W)
    target: str
    target_size: tuple[int, int]  # (H, W)
    debiased: bool
    svd_components: int | None  # None when not debiased
    source_points: np.ndarray  # (K, 2) float32 (x, y) reference pixels
    target_points: np.ndarray  # (K, 2) float32 (x, y) target pixels
    peak_similarity: np.ndarray  # (K,) float32

    def to_json(self) -> dict:
        (reference_height, reference_width), (target_height, target_width) = self.reference_size, self.target_size
        return {
            "coordinates": COORDINATES,
            "reference": self.reference, "reference_size": [reference_width, reference_height],
            "target": self.target, "target_size": [target_width, target_height],
            "debiased": self.debiased, "svd_components": self.svd_components,
            "matches": [
                {"source": [float(sx), float(sy)], "target": [float(tx), float(ty)], "peak_similarity": float(peak)}
                for (sx, sy), (tx, ty), peak in zip(self.source_points, self.target_points, self.peak_similarity)
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "MatchRecord":
        matches = data["matches"]
        (reference_width, reference_height), (target_width, target_height) = data["reference_size"], data["target_size"]
        return cls(
            reference=data["reference"], reference_size=(reference_height, reference_width),
            target=data["target"], target_size=(target_height, target_width),
            debiased=bool(data["debiased"]), svd_components=data["svd_components"],
            source_points=np.asarray([m["source"] for m in matches], np.float32).reshape(-1, 2),
            target_points=np.asarray([m["target"] for m in matches], np.float32).reshape(-1, 2),
            peak_similarity=np.asarray([m["peak_similarity"] for m in matches], np.float32),
        )


def read_record(path: Path) -> MatchRecord:
    return MatchRecord.from_json(json.loads(Path(path).read_text()))


def csv_text(record: MatchRecord) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for index, ((sx, sy), (tx, ty), peak) in enumerate(
        zip(record.source_points, record.target_points, record.peak_similarity)
    ):
        writer.writerow([index, f"{sx:.6g}", f"{sy:.6g}", f"{tx:.9g}", f"{ty:.9g}", f"{peak:.9g}"])
    return buffer.getvalue()


def read_csv(path: Path) -> np.ndarray:
    """(K, 5) float32: source_x, source_y, target_x, target_y, peak_similarity, in index order."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and tuple(rows[0]) != CSV_COLUMNS:
        raise ValueError(f"{path}: columns {tuple(rows[0])}, expected {CSV_COLUMNS}")
    return np.asarray([[float(row[name]) for name in CSV_COLUMNS[1:]] for row in rows], np.float32).reshape(-1, 5)


def _palette(count: int) -> list[tuple[int, int, int]]:
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb((0.61803 * i) % 1.0, 0.85, 1.0)) for i in range(count)
    ]


def side_by_side(reference: Image.Image, target: Image.Image, record: MatchRecord) -> Image.Image:
    """The reference and the target at one height, a coloured line from each keypoint to its match."""
    height = min(max(reference.height, target.height), PICTURE_HEIGHT_LIMIT)
    scales = (height / reference.height, height / target.height)
    left = reference.resize((max(1, round(reference.width * scales[0])), height), Image.BILINEAR)
    right = target.resize((max(1, round(target.width * scales[1])), height), Image.BILINEAR)
    canvas = Image.new("RGB", (left.width + right.width, height), (0, 0, 0))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    draw = ImageDraw.Draw(canvas)
    radius = max(2, height // 160)
    for colour, (sx, sy), (tx, ty) in zip(_palette(len(record.source_points)), record.source_points,
                                          record.target_points):
        start = (sx * scales[0], sy * scales[0])
        end = (left.width + tx * scales[1], ty * scales[1])
        draw.line([start, end], fill=colour, width=max(1, radius // 2))
        for x, y in (start, end):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour, width=max(1, radius // 2))
    return canvas


class MatchOutputs:
    """The output folder of one insid3-match job."""

    def __init__(self, folder: Path, *, with_csv: bool, with_picture: bool) -> None:
        hold_folder(folder)  # no other job may write there now
        self.folder, self.with_csv, self.with_picture = folder, with_csv, with_picture
        self.written = 0  # targets this job wrote

    def json_path(self, target: Path) -> Path:
        return self.folder / f"{target.stem}.json"

    def picture_path(self, target: Path) -> Path:
        return self.folder / f"{target.stem}.match.jpg"

    def done(self, target: Path) -> bool:
        """The JSON exists (written last), and the picture when one is asked for: a re-run that adds
        --visualize draws the targets matched without it."""
        return self.json_path(target).is_file() and (not self.with_picture or self.picture_path(target).is_file())

    def has_outputs(self) -> bool:
        return any(p.name != MANIFEST_FILE for p in self.folder.glob("*.json"))

    def write(self, record: MatchRecord, reference: Image.Image | None = None, target: Image.Image | None = None) -> None:
        stem = Path(record.target).stem
        if self.with_csv:
            write_atomically(self.folder / f"{stem}.csv", csv_text(record).encode())
        if self.with_picture and reference is not None and target is not None:
            buffer = io.BytesIO()
            side_by_side(reference, target, record).save(buffer, format="JPEG", quality=90)
            write_atomically(self.picture_path(Path(record.target)), buffer.getvalue())
        write_atomically(self.json_path(Path(record.target)), (json.dumps(record.to_json(), indent=1) + "\n").encode())
        self.written += 1

    def close(self) -> None:
        """The folder is let go (removed if this job made it and wrote nothing there)."""
        release_folder(self.folder, unused=not self.written)


def record_of(
    found: Correspondences, *, reference: str, reference_size: tuple[int, int], target: str,
    source_points: np.ndarray, debiased: bool, svd_components: int | None,
) -> MatchRecord:
    return MatchRecord(
        reference=reference, reference_size=tuple(reference_size), target=target, target_size=found.target_size,
        debiased=debiased, svd_components=svd_components if debiased else None,
        source_points=np.asarray(source_points, np.float32), target_points=found.points,
        peak_similarity=found.peak_similarity,
    )
