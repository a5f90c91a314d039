"""The user's labelled examples, whatever they came in: concepts, each with its positive images
(and their masks) and its negatives (images known not to show it: the right answer is the empty mask).

Sources (`SOURCES`, one reader each, chosen by `ExampleSource.kind`):
  folder    NAME.<image> + NAME.mask.png pairs, one concept (the `insid3-bench --images` rule)
  concepts  the JSON/YAML file `insid3-segment --concepts` reads (engine/jobs/concept_specs.py)
  coco      a COCO instances file and its image folder: a category is a concept, the union of its
            annotations in an image is that image's mask (pycocotools), and every image of the
            file without one of its annotations is one of its negatives
A reader returns concepts as `ConceptSpec`s (positives) and the images it knows are negatives;
a new source is one function in SOURCES. Images labelled for other concepts count as negatives
of a concept (never an image listed for it), and so does every image of `negatives` folders.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insid3.engine.jobs.concept_specs import ConceptSpec, check_files, check_name, read_concepts_file
from insid3.engine.runtime.images import load_mask, load_rgb
from insid3.errors import InputImageError, Insid3Error

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MASK_SUFFIX = ".mask.png"
NO_MASK = ""  # the annotation of a negative: its mask is empty


class ExamplesError(Insid3Error):
    """Labelled examples that cannot make a calibration (missing files, too few examples, ...)."""


@dataclass(frozen=True)
class ExampleSource:
    """Where the examples are: kind (a key of SOURCES), path (folder, concepts file or COCO file),
    images (COCO's image folder), name (the folder source's concept name)."""

    kind: str
    path: Path
    images: Path | None = None
    name: str | None = None

    def describe(self) -> str:
        images = f" (images {self.images})" if self.images else ""
        return f"{self.kind} {self.path}{images}"


@dataclass(frozen=True)
class Labelled:
    """One image and where its mask is: a mask file, a COCO file (entry = the image id, the
    concept = the category), or NO_MASK (a negative)."""

    image: Path
    annotation: str = NO_MASK
    entry: int | None = None


@dataclass(frozen=True)
class Concept:
    name: str
    positives: tuple[Labelled, ...]
    negatives: tuple[Labelled, ...]
    category_id: int | None = None  # COCO's


@dataclass(frozen=True)
class ExampleSet:
    concepts: tuple[Concept, ...]
    source: str  # in words, for the report and the profile

    def concept(self, index: int) -> Concept:
        return self.concepts[index]


@dataclass(frozen=True)
class Read:
    """What a source reader found: concepts with their labelled images, and per concept name the
    images the source knows lack it (a name left out: the images of the other concepts)."""

    concepts: tuple[tuple[str, tuple[Labelled, ...], int | None], ...]  # (name, positives, category id)
    negatives: dict[str, tuple[Labelled, ...]]


def _images_in(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise ExamplesError(f"{what} {folder} is not a folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.endswith(MASK_SUFFIX))


def read_folder(source: ExampleSource) -> Read:
    """NAME.<image> with NAME.mask.png: one concept, named by --name or the folder."""
    images = _images_in(source.path, "examples folder")
    pairs = [(image, image.with_name(image.stem + MASK_SUFFIX)) for image in images]
    positives = tuple(Labelled(image, str(mask)) for image, mask in pairs if mask.is_file())
    if not positives:
        raise ExamplesError(f"examples folder {source.path} has no NAME.<image> with a NAME{MASK_SUFFIX} beside it")
    name = check_name(source.name or source.path.resolve().name, f"examples folder {source.path}")
    return Read(concepts=((name, positives, None),), negatives={})


def read_concepts(source: ExampleSource) -> Read:
    return read_specs(read_concepts_file(source.path))


def read_specs(specs: list[ConceptSpec]) -> Read:
    """Concepts given as ConceptSpecs (a --concepts file, or any source that yields them)."""
    check_files(specs)
    concepts = tuple((spec.name, tuple(Labelled(image, str(mask)) for image, mask in spec.shots), None)
                     for spec in specs)
    return Read(concepts=concepts, negatives={})


def read_coco(source: ExampleSource) -> Read:
    """A COCO instances file (pycocotools) and its image folder."""
    coco = load_coco(source.path)
    if source.images is None:
        raise ExamplesError(f"COCO file {source.path}: give its image folder too")
    folder = source.images
    if not folder.is_dir():
        raise ExamplesError(f"COCO image folder {folder} is not a folder")
    image_ids = sorted(coco.getImgIds())
    concepts, negatives = [], {}
    for category in coco.loadCats(sorted(coco.getCatIds())):
        name = check_name(str(category["name"]), f"COCO file {source.path}")
        with_it = set(coco.getImgIds(catIds=[category["id"]]))
        labelled = [Labelled(folder / coco.imgs[i]["file_name"], str(source.path), int(i)) for i in image_ids]
        positives = tuple(item for item in labelled if item.entry in with_it)
        if positives:
            concepts.append((name, positives, int(category["id"])))
            negatives[name] = tuple(item for item in labelled if item.entry not in with_it)
    if not concepts:
        raise ExamplesError(f"COCO file {source.path} has no category with an annotated image")
    for _, positives, _ in concepts:
        for item in positives:
            if not item.image.is_file():
                raise ExamplesError(f"COCO file {source.path}: image {item.image} does not exist")
    return Read(concepts=tuple(concepts), negatives=negatives)


SOURCES: dict[str, Callable[[ExampleSource], Read]] = {
    "folder": read_folder,
    "concepts": read_concepts,
    "coco": read_coco,
}


def read_examples(source: ExampleSource, negatives: tuple[Path, ...] = ()) -> ExampleSet:
    """The examples of `source`, with negatives: images of other concepts (never one listed for
    this concept), those the source knows lack it, and every image of the `negatives` folders."""
    if source.kind not in SOURCES:
        raise ExamplesError(f"unknown example source {source.kind!r}: one of {', '.join(SOURCES)}")
    read = SOURCES[source.kind](source)
    shared = tuple(Labelled(image) for folder in negatives for image in _images_in(folder, "negatives folder"))
    concepts = []
    for name, positives, category in read.concepts:
        own = {item.image.resolve() for item in positives}
        if read.negatives.get(name) is not None:
            from_source = read.negatives[name]
        else:  # images labelled for the other concepts (by file): the concept is not in them
            seen: dict[Path, Labelled] = {}
            for other, items, _ in read.concepts:
                for item in items:
                    if other != name and item.image.resolve() not in own:
                        seen.setdefault(item.image.resolve(), Labelled(item.image))
            from_source = tuple(seen.values())
        kept = tuple(item for item in (*from_source, *shared) if item.image.resolve() not in own)
        concepts.append(Concept(name=name, positives=positives, negatives=kept, category_id=category))
    for concept in concepts:
        if len(concept.positives) < 2:
            raise ExamplesError(
                f"concept {concept.name!r} has {len(concept.positives)} labelled image: calibrating needs two or more "
                "(each is the target once, the others its references)")
    extra = f" + negatives {', '.join(map(str, negatives))}" if negatives else ""
    return ExampleSet(concepts=tuple(concepts), source=source.describe() + extra)


def load_coco(path: Path):
    """pycocotools' COCO of `path` (its loading messages kept off stdout)."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ExamplesError("COCO examples need pycocotools: pip install 'insid3[eval]'") from None
    if not path.is_file():
        raise ExamplesError(f"COCO file {path} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ExamplesError(f"COCO file {path} is not a COCO instances file: {exc!r}") from None


class MaskReader:
    """Masks of Labelled images: files, COCO annotations (one pycocotools COCO per file, kept), none."""

    def __init__(self) -> None:
        self._cocos: dict[str, object] = {}

    def rgb(self, item: Labelled) -> np.ndarray:
        try:
            return np.asarray(load_rgb(item.image))
        except InputImageError as exc:
            raise ExamplesError(str(exc)) from None

    def mask(self, item: Labelled, size: tuple[int, int], category_id: int | None) -> np.ndarray:
        if item.annotation == NO_MASK:
            return np.zeros(size, dtype=bool)
        if item.entry is None:
            try:
                mask = load_mask(Path(item.annotation))
            except InputImageError as exc:
                raise ExamplesError(str(exc)) from None
        else:
            mask = self._coco_mask(item, category_id)
        if mask.shape != size:
            raise ExamplesError(f"mask {item.annotation} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                                f"{item.image} is {size[1]}x{size[0]}")
        return mask

    def _coco_mask(self, item: Labelled, category_id: int | None) -> np.ndarray:
        coco = self._cocos.get(item.annotation)
        if coco is None:
            coco = self._cocos[item.annotation] = load_coco(Path(item.annotation))
        info = coco.imgs[item.entry]
        union = np.zeros((int(info["height"]), int(info["width"])), dtype=bool)
        with warnings.catch_warnings():  # pycocotools under NumPy 2 warns on every decode
            warnings.simplefilter("ignore", DeprecationWarning)
            for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[item.entry], catIds=[category_id], iscrowd=None)):
                union |= coco.annToMask(annotation) > 0
        return union
