"""Named concepts as `insid3-segment` takes them: `--concept NAME=IMAGE:MASK` (repeatable; a name
given again adds a shot) and `--concepts FILE`, a JSON or YAML mapping of names to examples:

    cat:
      - {image: cats/1.jpg, mask: cats/1.png}
      - {image: cats/2.jpg, mask: cats/2.png}
    dog: [{image: dog.jpg, mask: dog.png}]
    leash: [[leash.jpg, leash.png]]        # an example may also be an [image, mask] pair

A Label Studio JSON export (a list of tasks) is a concepts file too: each label is a concept and
each task's reviewed annotation (its ground truth, else its latest) gives a shot per label it
masks (brush or polygon), in task order; the masks are written as PNGs to a cache folder and the
images are found as engine/jobs/label_studio.py says (export_examples). So a project's reviewed
annotations are the next run's references.

Paths in a file are relative to the file's folder. Concepts keep the order they are first named
in (the file's, then the flags'): the i-th is label i of the label map, category i of COCO and
class i - 1 of YOLO. Names become file names and categories: a letter, digit or underscore, then
up to 63 of those, spaces, dots, plus or minus signs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from insid3.engine.jobs.label_studio import export_examples, is_export
from insid3.errors import InputImageError, Insid3Error

NAME_PATTERN = re.compile(r"\w[\w .+-]{0,63}")


class ConceptSpecError(Insid3Error):
    """A --concept flag or a --concepts file that does not say which examples make which concept."""


@dataclass(frozen=True)
class ConceptSpec:
    name: str
    shots: tuple[tuple[Path, Path], ...]  # (image, mask) per example


def check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name != name.strip():
        raise ConceptSpecError(f"{where}: concept name {name!r} must be a letter, digit or underscore followed by "
                               "up to 63 of those, spaces, dots, + or -")
    return name


def parse_concept_flag(text: str) -> ConceptSpec:
    """NAME=IMAGE:MASK. A path holding ':' is split where both sides are existing files."""
    where = f"--concept {text}"
    name, equals, pair = text.partition("=")
    if not equals or not pair:
        raise ConceptSpecError(f"{where}: expected NAME=IMAGE:MASK")
    splits = [(pair[:i], pair[i + 1 :]) for i, char in enumerate(pair) if char == ":"]
    splits = [(image, mask) for image, mask in splits if image and mask]
    if len(splits) > 1:
        splits = [(image, mask) for image, mask in splits if Path(image).is_file() and Path(mask).is_file()] or splits
    if len(splits) != 1:
        raise ConceptSpecError(f"{where}: expected NAME=IMAGE:MASK with one ':' between two paths"
                               + (" (ambiguous: list it in a --concepts file)" if splits else ""))
    image, mask = splits[0]
    return ConceptSpec(check_name(name, where), ((Path(image), Path(mask)),))


def _shot(entry: object, base: Path, where: str) -> tuple[Path, Path]:
    if isinstance(entry, dict) and set(entry) == {"image", "mask"}:
        image, mask = entry["image"], entry["mask"]
    elif isinstance(entry, (list, tuple)) and len(entry) == 2:
        image, mask = entry
    else:
        raise ConceptSpecError(f"{where}: an example is {{image: PATH, mask: PATH}} or [IMAGE, MASK], got {entry!r}")
    if not isinstance(image, str) or not isinstance(mask, str):
        raise ConceptSpecError(f"{where}: image and mask must be paths, got {image!r} and {mask!r}")
    return base / image, base / mask


def _unique_keys(pairs: list[tuple[object, object]], where: str) -> dict:
    """A mapping of `pairs`, refusing a key given twice (JSON and YAML would keep only the last)."""
    mapping: dict = {}
    for key, value in pairs:
        if key in mapping:
            raise ConceptSpecError(f"{where}: the key {key!r} is given twice (a concept's examples go in one list)")
        mapping[key] = value
    return mapping


def _load_yaml(text: str, where: str) -> object:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):  # merge keys (<<) may override: not checked
                keys = [self.construct_object(key, deep=True) for key, _ in node.value
                        if key.tag != "tag:yaml.org,2002:merge"]
                try:
                    _unique_keys([(key, None) for key in keys], where)
                except TypeError:  # an unhashable key: the constructor says so below
                    pass
            return super().construct_mapping(node, deep)

    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConceptSpecError(f"{where} is not valid YAML: {exc.problem or exc.context}{at}") from None
    except yaml.YAMLError as exc:
        raise ConceptSpecError(f"{where} is not valid YAML: {str(exc).splitlines()[0]}") from None


def read_concepts_file(path: Path) -> list[ConceptSpec]:
    where = f"--concepts {path}"
    if path.is_dir():
        raise ConceptSpecError(f"{where} is a folder: give a JSON or YAML file")
    if not path.is_file():
        raise ConceptSpecError(f"{where} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConceptSpecError(f"{where} cannot be read: {str(exc).splitlines()[0]}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, where))
        except ValueError as exc:
            raise ConceptSpecError(f"{where} is not valid JSON: {str(exc).splitlines()[0]}") from None
    else:
        data = _load_yaml(text, where)
    if is_export(data):
        return export_specs(path, data)
    if not isinstance(data, dict) or not data:
        raise ConceptSpecError(f"{where}: expected a mapping of concept names to lists of examples")
    specs = []
    for name, examples in data.items():
        check_name(name, where)
        examples = [examples] if isinstance(examples, dict) else examples
        if not isinstance(examples, list) or not examples:
            raise ConceptSpecError(f"{where}: concept {name!r} needs a list of examples")
        specs.append(ConceptSpec(name, tuple(_shot(entry, path.parent, f"{where}, {name}") for entry in examples)))
    return specs


def export_specs(path: Path, tasks: list) -> list[ConceptSpec]:
    """The concepts of a Label Studio JSON export, labels in the order they first appear."""
    data_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = hashlib.sha256(f"{path.resolve()}\n".encode() + path.read_bytes()).hexdigest()[:16]
    examples = export_examples(path, tasks, Path(data_home) / "insid3" / "label-studio-exports" / key)
    where = f"--concepts {path}"
    return merge(ConceptSpec(check_name(label, where), ((image, mask),)) for label, image, mask in examples)


def merge(specs: Iterable[ConceptSpec]) -> list[ConceptSpec]:
    """One spec per name, in the order names first appear; a repeated name adds its shots."""
    merged: dict[str, tuple[tuple[Path, Path], ...]] = {}
    for spec in specs:
        merged[spec.name] = merged.get(spec.name, ()) + spec.shots
    return [ConceptSpec(name, shots) for name, shots in merged.items()]


def check_files(specs: Iterable[ConceptSpec]) -> None:
    """Every example's image and mask is an existing file (InputImageError naming the first that is not)."""
    for spec in specs:
        for image, mask in spec.shots:
            for role, path in (("image", image), ("mask", mask)):
                if path.is_dir():
                    raise InputImageError(f"concept {spec.name!r}: {role} {path} is a folder: give an image file")
                if not path.is_file():
                    raise InputImageError(f"concept {spec.name!r}: {role} {path} does not exist")
