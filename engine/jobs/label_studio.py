"""Label Studio's side of a mask: labelling configs, results to masks and masks to results.

Shared by the ML backend (engine/serve/routes/label_studio.py), the pre-annotation writer
(`--format label-studio`, engine/jobs/outputs/label_studio.py) and the examples read from a
Label Studio JSON export (`--concepts export.json`, engine/jobs/concept_specs.py).

    config = parse_labeling_config(xml)   # the <Image> and the <BrushLabels>/<PolygonLabels> on it
    config.labels                         # ('ellipse', 'rectangle'): each label is a concept
    results = mask_results(mask, "ellipse", config, score=0.93)   # a prediction's `result` items
    masks = annotation_masks(annotation["result"], config)        # {label: bool (H, W)}

Brush masks are Label Studio's RLE, encoded and decoded by label-studio-sdk's own converter
(`label_studio_sdk.converter.brush`: RGBA runs, the mask in the alpha channel). Polygons are in
percent of the image's width and height; ours are the outlines of the mask's pixel squares
(engine/jobs/outputs/polygons.py) and a polygon is read back as the pixels whose centres it
holds, so an unsimplified polygon round-trips exactly.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from insid3.errors import Insid3Error, SettingsError

BRUSH, POLYGON = "brushlabels", "polygonlabels"
CONTROL_KINDS = {"BrushLabels": BRUSH, "PolygonLabels": POLYGON}


class LabelStudioFormatError(Insid3Error):
    """A labelling config we cannot serve, or a result or export we cannot read."""


def brush_codec() -> ModuleType:
    """label-studio-sdk's brush RLE module (imported on first use: the SDK takes seconds to import)."""
    try:
        from label_studio_sdk.converter import brush
    except ImportError as exc:
        raise SettingsError(f"Label Studio's brush masks need label-studio-sdk ({exc}): "
                            "pip install 'insid3[label-studio]'") from None
    return brush


@dataclass(frozen=True)
class LabelingConfig:
    """What a project's labelling config says about masks: the control's name (a result's
    from_name), the image's name (to_name), the task data key the image's URL is under, the kind
    (brushlabels or polygonlabels) and the labels, in the config's order."""

    from_name: str
    to_name: str
    image_key: str
    kind: str
    labels: tuple[str, ...]

    @property
    def digest(self) -> str:
        """Changes whenever anything a reference depends on changes (names, kind, labels)."""
        text = "\n".join([self.from_name, self.to_name, self.image_key, self.kind, *self.labels])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def example_xml(self) -> str:
        """The config in Label Studio's XML (docs, tests, the pre-annotation writer's default)."""
        tag = "BrushLabels" if self.kind == BRUSH else "PolygonLabels"
        labels = "".join(f'<Label value="{label}"/>' for label in self.labels)
        return (f'<View><Image name="{self.to_name}" value="${self.image_key}"/>'
                f'<{tag} name="{self.from_name}" toName="{self.to_name}">{labels}</{tag}></View>')


def default_config(labels: Iterable[str], kind: str = BRUSH) -> LabelingConfig:
    """The config docs/label-studio.md shows: <Image name="image" value="$image"/> and a
    <BrushLabels name="label"> (or <PolygonLabels>) holding the labels."""
    return LabelingConfig(from_name="label", to_name="image", image_key="image", kind=kind, labels=tuple(labels))


def parse_labeling_config(xml: str) -> LabelingConfig:
    """The first <BrushLabels> or <PolygonLabels> whose toName is an <Image>, with its labels.
    LabelStudioFormatError says what is missing."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise LabelStudioFormatError(f"the labelling config is not valid XML: {exc}") from None
    images = {element.get("name"): element.get("value", "") for element in root.iter("Image") if element.get("name")}
    if not images:
        raise LabelStudioFormatError("the labelling config has no <Image name=... value=$...>: "
                                     "INSID3 segments images")
    controls = [element for element in root.iter() if element.tag in CONTROL_KINDS]
    if not controls:
        raise LabelStudioFormatError("the labelling config has no <BrushLabels> or <PolygonLabels>: "
                                     "INSID3 predicts masks (brush) or polygons")
    for control in controls:
        to_name = control.get("toName", "")
        if to_name in images:
            labels = tuple(label.get("value", "") for label in control.iter("Label") if label.get("value"))
            if not labels:
                raise LabelStudioFormatError(f"<{control.tag} name={control.get('name')!r}> has no <Label value=...>: "
                                             "each label is a concept to segment")
            if len(set(labels)) != len(labels):
                raise LabelStudioFormatError(f"<{control.tag}> names a label twice: {', '.join(labels)}")
            value = images[to_name]
            if not value.startswith("$") or len(value) < 2:
                raise LabelStudioFormatError(f"<Image name={to_name!r}> takes its URL from value={value!r}: "
                                             "expected a task data key such as $image")
            return LabelingConfig(control.get("name", ""), to_name, value[1:], CONTROL_KINDS[control.tag], labels)
    raise LabelStudioFormatError("no <BrushLabels> or <PolygonLabels> of the labelling config points (toName) at an "
                                 f"<Image>; the images are {', '.join(sorted(images))}")


# ------------------------------------------------------------------ masks -> results
def _result(config: LabelingConfig, size: tuple[int, int], value: dict, score: float | None) -> dict:
    height, width = size
    item = {"id": uuid.uuid4().hex[:10], "from_name": config.from_name, "to_name": config.to_name,
            "type": config.kind, "original_width": width, "original_height": height, "image_rotation": 0,
            "value": value}
    if score is not None:
        item["score"] = score
    return item


def mask_results(mask: np.ndarray, label: str, config: LabelingConfig, score: float | None = None,
                 tolerance: float = 1.0) -> list[dict]:
    """A prediction's result items for one label's bool (H, W) mask: one brush item (the whole
    mask), or one polygon item per connected outline (percent coordinates; no holes); none when
    the mask is empty."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    if config.kind == BRUSH:
        rle = brush_codec().mask2rle(mask.astype(np.uint8) * 255)
        return [_result(config, mask.shape, {"format": "rle", "rle": [int(v) for v in rle], BRUSH: [label]}, score)]
    from insid3.engine.jobs.outputs.polygons import mask_polygons

    height, width = mask.shape
    scale = np.array([100.0 / width, 100.0 / height])
    return [
        _result(config, mask.shape, {"points": (polygon * scale).round(4).tolist(), "closed": True, POLYGON: [label]},
                score)
        for polygon in mask_polygons(mask, tolerance)
    ]


# ------------------------------------------------------------------ results -> masks
def polygon_mask(points: list, size: tuple[int, int]) -> np.ndarray:
    """The bool (H, W) pixels whose centres lie inside a polygon given in percent coordinates."""
    import shapely

    height, width = size
    vertices = np.asarray(points, dtype=np.float64).reshape(-1, 2) * [width / 100.0, height / 100.0]
    mask = np.zeros((height, width), dtype=bool)
    if len(vertices) < 3:
        return mask
    polygon = shapely.Polygon(vertices)
    x0, y0, x1, y1 = polygon.bounds
    cols = np.arange(max(0, int(np.floor(x0))), min(width, int(np.ceil(x1)) + 1))
    rows = np.arange(max(0, int(np.floor(y0))), min(height, int(np.ceil(y1)) + 1))
    if cols.size and rows.size:
        xs, ys = np.meshgrid(cols + 0.5, rows + 0.5)
        shapely.prepare(polygon)
        inside = shapely.contains_xy(polygon, xs, ys)
        mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = inside
    return mask


def result_size(item: dict) -> tuple[int, int]:
    try:
        return int(item["original_height"]), int(item["original_width"])
    except (KeyError, TypeError, ValueError):
        raise LabelStudioFormatError(f"a {item.get('type')} result carries no original_width/original_height") from None


def annotation_masks(result: list[dict], config: LabelingConfig | None = None) -> dict[str, np.ndarray]:
    """{label: bool (H, W)} of an annotation's brush and polygon items (the union of a label's
    items), for the config's control only when a config is given; other items are ignored."""
    masks: dict[str, np.ndarray] = {}
    for item in result:
        kind, value = item.get("type"), item.get("value") or {}
        if kind not in (BRUSH, POLYGON) or (config is not None and item.get("from_name") != config.from_name):
            continue
        labels = value.get(kind) or []
        if not labels:
            continue
        size = result_size(item)
        if kind == BRUSH:
            if value.get("format", "rle") != "rle" or not value.get("rle"):
                raise LabelStudioFormatError(f"a brush result holds no RLE (format {value.get('format')!r})")
            pixels = brush_codec().decode_rle(value["rle"])
            if pixels.size != size[0] * size[1] * 4:
                raise LabelStudioFormatError(f"a brush RLE holds {pixels.size // 4} pixels, not {size[1]}x{size[0]}")
            mask = pixels.reshape(size[0], size[1], 4)[:, :, 3] > 0
        else:
            mask = polygon_mask(value.get("points") or [], size)
        for label in labels:
            if label in masks and masks[label].shape != mask.shape:
                raise LabelStudioFormatError(f"label {label!r} has results of two sizes in one annotation")
            masks[label] = masks[label] | mask if label in masks else mask
    return masks


def chosen_annotation(task: dict) -> dict | None:
    """The annotation a task's reviewed mask comes from: its ground truth if one is marked, else
    its latest (highest id), leaving out cancelled (skipped) ones; None without any."""
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not kept:
        return None
    truths = [a for a in kept if a.get("ground_truth")]
    return max(truths or kept, key=lambda annotation: int(annotation.get("id") or 0))


def concept_score(concept: Any) -> float:
    """The score Label Studio shows beside a mask: the concept's quality record's score
    (engine/runtime/quality.py) where it has one, else its seed cluster's doc §8 score (exact for
    the seed), 0 for a concept judged absent."""
    quality = concept.quality
    if quality is not None:
        return round(float(quality.score), 6)
    if concept.seed is None:
        return 0.0
    return round(float(concept.score_low[concept.seed]), 6)


# ------------------------------------------------------------------ a JSON export as examples
LOCAL_FILES = "/data/local-files/?d="


def is_export(data: object) -> bool:
    """Whether a loaded JSON document is a Label Studio JSON export (a list of tasks)."""
    return isinstance(data, list) and bool(data) and all(isinstance(t, dict) and "data" in t for t in data)


def _image_of(task: dict, where: str) -> str:
    data = task.get("data") or {}
    if isinstance(data.get("image"), str):
        return data["image"]
    strings = [value for value in data.values() if isinstance(value, str)]
    if len(strings) != 1:
        raise LabelStudioFormatError(f"{where}: task {task.get('id')} names no image (data.image, or one string)")
    return strings[0]


def _local_image(reference: str, base: Path) -> Path | None:
    """Where an image reference is on this machine: local storage under
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (else the export's folder), or a path; None: remote."""
    from urllib.parse import unquote

    if reference.startswith(LOCAL_FILES):
        relative = unquote(reference[len(LOCAL_FILES):])
        root = os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
        return Path(root) / relative if root else base / relative
    if reference.startswith(("http://", "https://", "/data/", "s3://", "gs://", "azure-blob://")):
        return None
    return base / reference


def _download(reference: str, folder: Path, where: str) -> Path:
    """A task's image fetched from Label Studio (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)."""
    try:
        import httpx
    except ImportError as exc:
        raise SettingsError(f"{where}: fetching images from Label Studio needs httpx ({exc}): "
                            "pip install 'insid3[label-studio]'") from None

    url = os.environ.get("LABEL_STUDIO_URL", "").rstrip("/")
    if reference.startswith("/") and not url:
        raise LabelStudioFormatError(f"{where}: image {reference} is on a Label Studio server: set LABEL_STUDIO_URL "
                                     "(and LABEL_STUDIO_API_KEY) to fetch it, or export with local files")
    address = reference if reference.startswith(("http://", "https://")) else url + reference
    token = os.environ.get("LABEL_STUDIO_API_KEY")
    headers = {"Authorization": f"Token {token}"} if token and url and address.startswith(url + "/") else {}
    try:
        response = httpx.get(address, headers=headers, follow_redirects=True, timeout=60.0)
    except httpx.HTTPError as exc:
        raise LabelStudioFormatError(f"{where}: image {address}: {exc}") from None
    if response.status_code != 200:
        raise LabelStudioFormatError(f"{where}: image {address}: Label Studio answered {response.status_code}")
    path = folder / ("image-" + hashlib.sha256(response.content).hexdigest()[:24])
    if not path.is_file():
        path.write_bytes(response.content)
    return path


def export_examples(path: Path, tasks: list, cache: Path) -> list[tuple[str, Path, Path]]:
    """(label, image path, mask path) of every label with a mask in each task's reviewed
    annotation (`chosen_annotation`), in task order: masks are written to `cache` as PNG
    (0/255) named by their content, images are found locally or downloaded there."""
    from PIL import Image

    where = f"--concepts {path}"
    cache.mkdir(parents=True, exist_ok=True)
    examples = []
    for task in tasks:
        annotation = chosen_annotation(task)
        if annotation is None:
            continue
        try:
            masks = annotation_masks(annotation.get("result") or [])
        except LabelStudioFormatError as exc:
            raise LabelStudioFormatError(f"{where}: task {task.get('id')}: {exc}") from None
        masks = {label: mask for label, mask in masks.items() if mask.any()}
        if not masks:
            continue
        reference = _image_of(task, where)
        image = _local_image(reference, path.parent) or _download(reference, cache, where)
        for label, mask in masks.items():
            pixels = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
            mask_path = cache / f"mask-{hashlib.sha256(pixels.tobytes()).hexdigest()[:24]}-{mask.shape[1]}x{mask.shape[0]}.png"
            if not mask_path.is_file():
                pixels.save(mask_path)
            examples.append((label, image, mask_path))
    if not examples:
        raise LabelStudioFormatError(f"{where}: the Label Studio export holds no brush or polygon annotation")
    return examples
