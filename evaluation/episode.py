"""What one episode is: a class, a target and its references, each an image file and where its
mask comes from, and what loading one gives (the RGB pixels the model sees and the masks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Item:
    """One image of an episode, named by the files that are read for it.

    image: the image file; annotation: the file its mask is read from (a label map, an
    annotation JSON, a pickle); entry: the key of this image inside that file, where it holds
    many (LVIS: the image path key; PACO-Part: the image id); object: which annotated object, where the dataset picks one
    (Pascal-Part: index into the annotation's object list; PACO-Part: obj_ann_id; PerMIS: the
    frame's index in masks.npz.npy); crop: (y0, y1, x0, x1) Python slice bounds of the object
    box, for the part datasets.
    """

    image: str
    annotation: str
    entry: str | int | None = None
    object: int | None = None
    crop: tuple[int, int, int, int] | None = None

    def to_json(self) -> dict:
        data: dict = {"image": self.image, "annotation": self.annotation}
        if self.entry is not None:
            data["entry"] = self.entry.item() if isinstance(self.entry, np.generic) else self.entry
        if self.object is not None:
            data["object"] = self.object
        if self.crop is not None:
            data["crop"] = list(self.crop)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Item":
        crop = data.get("crop")
        return cls(
            image=str(data["image"]), annotation=str(data["annotation"]), entry=data.get("entry"),
            object=None if data.get("object") is None else int(data["object"]),
            crop=None if crop is None else (int(crop[0]), int(crop[1]), int(crop[2]), int(crop[3])),
        )


@dataclass(frozen=True)
class Episode:
    """Episode `index` of a run: the meter column `class_id`, the target, the references in order."""

    index: int
    class_id: int
    target: Item
    references: tuple[Item, ...]

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "class_id": self.class_id,
            "target": self.target.to_json(),
            "references": [item.to_json() for item in self.references],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Episode":
        return cls(
            index=int(data["index"]), class_id=int(data["class_id"]),
            target=Item.from_json(data["target"]),
            references=tuple(Item.from_json(item) for item in data["references"]),
        )


@dataclass(frozen=True)
class LoadedItem:
    """An item as the model receives it: RGB pixels (cropped where the dataset crops) and masks
    of the same height and width."""

    rgb: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool: the class's foreground
    ignore: np.ndarray | None = None  # (H, W) float32 ignore-index map (iSAID only; 1 = ignored)

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be H x W x 3 uint8, got {self.rgb.dtype} {self.rgb.shape}")
        if self.mask.shape != self.rgb.shape[:2]:
            raise ValueError(f"mask {self.mask.shape} does not match the image {self.rgb.shape[:2]}")
