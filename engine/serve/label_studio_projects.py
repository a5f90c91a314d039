"""The Label Studio backend's memory: each project's reference shots, on disk.

    <data dir>/<project>/project.json     the labelling config it was built for and its shots
    <data dir>/<project>/images/<sha256>  a task's image as Label Studio served it
    <data dir>/<project>/masks/<sha256>.png  a label's mask on it (mode L, 0/255)

<project> is Label Studio's "<id>.<created timestamp>" (a project re-created under the same id
is another project). A shot is one label's mask in one annotation: an annotation created or
updated replaces its shots, a deleted one removes them. project.json is rewritten atomically
(temporary file, fsync, rename) after every change and read back at start, so a restart keeps the
references; the image and mask files are content-addressed and written before it. A labelling
config whose digest differs from the one the shots were built for drops them all. Each label
keeps at most `max_shots` shots, those of the most recent annotations (highest ids).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.jobs.label_studio import LabelingConfig

STATE_FILE = "project.json"
PROJECT_KEY = re.compile(r"\d{1,18}(\.\d{1,18})?")


@dataclass(frozen=True)
class Shot:
    """One label's mask in one annotation of one task: the files hold the task's image bytes and
    the mask PNG, named by their sha256."""

    label: str
    annotation: int
    task: int
    image: str  # sha256 of the image bytes: images/<image>
    mask: str  # sha256 of the mask PNG: masks/<mask>.png


@dataclass(frozen=True)
class ProjectState:
    key: str
    config: LabelingConfig
    shots: tuple[Shot, ...] = ()
    imported: bool = False  # the annotations made before the backend was connected have been read

    def shots_of(self, label: str) -> tuple[Shot, ...]:
        """A label's shots in annotation order (the order they are encoded in)."""
        return tuple(sorted((s for s in self.shots if s.label == label), key=lambda s: (s.annotation, s.task)))

    def annotations(self) -> dict[int, tuple[str, ...]]:
        """{annotation id: the labels it gives a shot for}."""
        found: dict[int, tuple[str, ...]] = {}
        for shot in self.shots:
            found[shot.annotation] = found.get(shot.annotation, ()) + (shot.label,)
        return found

    def digest(self) -> str:
        """Changes whenever a shot, the config or a label's shots change."""
        text = json.dumps([self.config.digest, sorted([s.label, s.annotation, s.task, s.image, s.mask]
                                                      for s in self.shots)])
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> dict:
        return {"project": self.key, "config": asdict(self.config), "config_digest": self.config.digest,
                "imported": self.imported, "shots": [asdict(shot) for shot in self.shots]}

    @classmethod
    def from_json(cls, data: dict) -> "ProjectState":
        config = data["config"]
        config = LabelingConfig(**{**config, "labels": tuple(config["labels"])})
        shots = tuple(Shot(**shot) for shot in data.get("shots", []))
        return cls(key=data["project"], config=config, shots=shots, imported=bool(data.get("imported")))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mask_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class ProjectBook:
    """Every project's state, in memory and on disk under `root`; safe to call from any thread."""

    def __init__(self, root: Path, max_shots: int) -> None:
        self.root, self.max_shots = Path(root), max_shots
        self._lock = threading.Lock()
        self._projects: dict[str, ProjectState] = {}

    def folder(self, key: str) -> Path:
        if not PROJECT_KEY.fullmatch(key):  # Label Studio's "<id>.<timestamp>"; anything else is hashed
            key = "x" + sha256(key.encode())[:24]
        return self.root / key

    def get(self, key: str) -> ProjectState | None:
        with self._lock:
            if key not in self._projects:
                path = self.folder(key) / STATE_FILE
                if path.is_file():
                    self._projects[key] = ProjectState.from_json(json.loads(path.read_text(encoding="utf-8")))
            return self._projects.get(key)

    def configure(self, key: str, config: LabelingConfig) -> ProjectState:
        """The project's state for this config: kept when the config's digest is the one its shots
        were built for, else a fresh state (no shots, not imported)."""
        current = self.get(key)
        if current is not None and current.config.digest == config.digest:
            return current
        return self._save(ProjectState(key=key, config=config))

    def mark_imported(self, key: str) -> ProjectState:
        return self._save(replace(self._require(key), imported=True))

    def put_annotation(self, key: str, annotation: int, task: int, image: bytes | None,
                       masks: dict[str, np.ndarray]) -> ProjectState:
        """Replace an annotation's shots by one per label of the config with a non-empty mask
        (image: the task's image bytes, needed when there is such a mask)."""
        state = self._require(key)
        folder = self.folder(key)
        shots = [s for s in state.shots if s.annotation != annotation]
        kept = {label: mask for label, mask in masks.items() if label in state.config.labels and mask.any()}
        if kept:
            image_sha = sha256(image)
            (folder / "images").mkdir(parents=True, exist_ok=True)
            (folder / "masks").mkdir(parents=True, exist_ok=True)
            if not (folder / "images" / image_sha).is_file():
                _write_atomically(folder / "images" / image_sha, image)
            for label, mask in kept.items():
                data = mask_png(mask)
                mask_sha = sha256(data)
                if not (folder / "masks" / f"{mask_sha}.png").is_file():
                    _write_atomically(folder / "masks" / f"{mask_sha}.png", data)
                shots.append(Shot(label=label, annotation=annotation, task=task, image=image_sha, mask=mask_sha))
        return self._save(replace(state, shots=self._bounded(shots, state.config)))

    def remove_annotations(self, key: str, annotations: set[int]) -> ProjectState:
        state = self._require(key)
        return self._save(replace(state, shots=tuple(s for s in state.shots if s.annotation not in annotations)))

    def shot_files(self, key: str, shot: Shot) -> tuple[bytes, bytes]:
        """(image bytes, mask PNG bytes) of a shot."""
        folder = self.folder(key)
        return (folder / "images" / shot.image).read_bytes(), (folder / "masks" / f"{shot.mask}.png").read_bytes()

    def _bounded(self, shots: list[Shot], config: LabelingConfig) -> tuple[Shot, ...]:
        kept: list[Shot] = []
        for label in config.labels:
            mine = sorted((s for s in shots if s.label == label), key=lambda s: -s.annotation)
            kept.extend(mine[: self.max_shots])
        return tuple(kept)

    def _require(self, key: str) -> ProjectState:
        state = self.get(key)
        if state is None:
            raise KeyError(f"project {key} is not set up")
        return state

    def _save(self, state: ProjectState) -> ProjectState:
        folder = self.folder(state.key)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            _write_atomically(folder / STATE_FILE, (json.dumps(state.to_json(), indent=1) + "\n").encode())
            self._projects[state.key] = state
        return state
