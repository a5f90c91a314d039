"""Tiny synthetic datasets in the exact on-disk layout of each of the nine benchmarks
(docs/evaluation.md, "Layouts"), written by the tests: the shapes the authors' loaders read,
with a few images each, and the variants the golden episodes of the protocol were taken on."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

SIZE = (30, 40)  # (H, W) of most synthetic images


def write_image(path: Path, seed: int, size: tuple[int, int] = SIZE, fmt: str | None = None) -> None:
    """A smooth random RGB picture (different per seed)."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    image = Image.fromarray(base).resize((w, h), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def write_mask(path: Path, mask: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8), mode="L").save(path, format=fmt)


def block(y0: int, y1: int, x0: int, x1: int, value: int = 255, size: tuple[int, int] = SIZE) -> np.ndarray:
    out = np.zeros(size, dtype=np.uint8)
    out[y0:y1, x0:x1] = value
    return out


def rle_of(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def dump_pickle(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))


# ---------------------------------------------------------------- COCO-20i
def coco_name(i: int) -> str:
    return f"val2014/COCO_val2014_{i:012d}.jpg"


def write_coco(root: Path, lengths: dict[int, int] | None = None, images: int = 2) -> list[str]:
    """`images` images whose label maps hold every class c as a stripe of value c + 1 (column c,
    rows 5..24; 96 px wide); class c of fold c % 4 lists the first lengths.get(c, images)."""
    base = root / "COCO2014"
    names = [coco_name(i + 1) for i in range(images)]
    for i, name in enumerate(names):
        write_image(base / name, seed=i, size=(30, 96))
        labels = np.zeros((30, 96), dtype=np.uint8)
        for c in range(80):
            labels[5:25, c] = c + 1
        write_mask(base / "annotations" / name.replace(".jpg", ".png"), labels)
    lengths = lengths or {}
    for fold in range(4):
        split = {c: names[: lengths.get(c, images)] if c % 4 == fold else [] for c in range(80)}
        dump_pickle(base / "splits" / "val" / f"fold{fold}.pkl", split)
    return names


# ---------------------------------------------------------------- LVIS-92i
def write_lvis(root: Path, categories: int = 10, extra_single: bool = True, more: int = 0) -> dict:
    """Categories 100.. with 2 + (k mod 3) + `more` images each (some as RLE), plus category 200
    with one image (filtered out)."""
    base = root / "LVIS"
    annotations: dict = {}
    square = [[5, 5, 30, 5, 30, 20, 5, 20]]
    for k in range(categories):
        cid = 100 + k
        annotations[cid] = {}
        for i in range(2 + k % 3 + more):
            name = f"val2017/{cid:06d}_{i}.jpg"
            write_image(base / "coco" / name, seed=cid * 10 + i)
            if k % 2:
                segmentation = rle_of(block(3 + i, 20, 4, 25 + i, 1))
                segmentation["counts"] = segmentation["counts"].encode("ascii") if i % 2 else segmentation["counts"]
            else:
                segmentation = square
            annotations[cid][name] = {"annotations": [{"segmentation": segmentation}, {"segmentation": [[1, 1, 8, 1, 8, 6]]}]}
    if extra_single:
        name = "val2017/000200_0.jpg"
        write_image(base / "coco" / name, seed=200)
        annotations[200] = {name: {"annotations": [{"segmentation": square}]}}
    dump_pickle(base / "lvis_val.pkl", annotations)
    return annotations


# ---------------------------------------------------------------- Pascal-Part
PASCAL_BOX = {"xmin": 4, "ymin": 2, "xmax": 36, "ymax": 28}


def _pascal_object(name: str, part: str, mask: np.ndarray, box: dict | None = None) -> dict:
    return {"name": name, "bndbox": dict(box or PASCAL_BOX), "parts": [{"name": part, "mask": [rle_of(mask)]}]}


def write_pascal_part(root: Path) -> Path:
    """The golden variant: fold 1 (indoor): chair+LEG val 01, 02, 03 (03 with a second chair whose
    LEG is a 4 x 4 square), sofa+BACK val 04, 05, and a chair+TAIL without train images (not a
    class; it counts toward the length). Fold 0 (animals): cat+HEAD val 01, 02 and cat+TAIL."""
    base = root / "Pascal-Part" / "VOCdevkit" / "VOC2010"
    index = {
        "animals": {"object": {"cat": {"part": {
            "HEAD": {"train": ["2008_000009"], "val": ["2008_000001", "2008_000002"]},
            "TAIL": {"train": [], "val": ["2008_000001"]},
        }}}},
        "indoor": {"object": {
            "chair": {"part": {
                "LEG": {"train": ["2008_000009"], "val": ["2008_000001", "2008_000002", "2008_000003"]},
                "TAIL": {"train": [], "val": ["2008_000001"]},
            }},
            "sofa": {"part": {"BACK": {"train": ["2008_000009"], "val": ["2008_000004", "2008_000005"]}}},
        }},
        "person": {"object": {}},
        "vehicles": {"object": {}},
    }
    base.mkdir(parents=True, exist_ok=True)
    (base / "all_obj_part_to_image.json").write_text(json.dumps(index))
    for i in range(1, 6):
        image_id = f"2008_{i:06d}"
        write_image(base / "JPEGImages" / f"{image_id}.jpg", seed=50 + i)
        main = block(5 + i, 20, 8, 30, 1)
        if i <= 3:
            objects = [_pascal_object("chair", "LEG", main), _pascal_object("cat", "HEAD", main)]
            if i == 3:
                objects.append(_pascal_object("chair", "LEG", block(2, 6, 2, 6, 1), {"xmin": 0, "ymin": 0, "xmax": 20, "ymax": 20}))
        else:
            objects = [_pascal_object("sofa", "BACK", main)]
        (base / "Annotations_Part_json_merged_part_classes").mkdir(exist_ok=True)
        (base / "Annotations_Part_json_merged_part_classes" / f"{image_id}.json").write_text(json.dumps({"object": objects}))
    return base


# ---------------------------------------------------------------- PACO-Part
PACO_BOX = [2.5, 3.5, 30.2, 20.7]


def write_paco_part(root: Path) -> None:
    """The golden variant: train cids 1000..1447; val cid 1000 -> images 1, 2, 3; 1004 -> 4, 5;
    1008 -> 6; the image at position i of its class has 1 + (i mod 2) objects of two parts."""
    base = root / "PACO-Part"
    train = {"cid2img": {cid: [] for cid in range(1000, 1448)}}
    cid2img: dict = {}
    img2anno: dict = {}
    for cid, images in ((1000, (1, 2, 3)), (1004, (4, 5)), (1008, (6,))):
        cid2img[cid] = []
        for position, image_id in enumerate(images):
            path = f"/any/where/val2017/{image_id:012d}.jpg"
            cid2img[cid].append({image_id: path})
            write_image(base / "coco" / "val2017" / f"{image_id:012d}.jpg", seed=70 + image_id)
            annotations = []
            for o in range(1 + position % 2):
                for part in range(2):
                    y = 5 + 4 * part + o
                    polygon = [[4.0, y, 28.0, y, 28.0, y + 3.0, 4.0, y + 3.0]]
                    annotations.append({"category_id": cid, "obj_ann_id": 10 * image_id + o, "obj_bbox": list(PACO_BOX),
                                        "segmentation": polygon})
            annotations.append({"category_id": 9999, "obj_ann_id": 1, "obj_bbox": [0, 0, 5, 5], "segmentation": [[0, 0, 4, 0, 4, 4]]})
            img2anno[image_id] = annotations
        if cid == 1000:
            cid2img[cid].append({1: "/any/where/val2017/000000000001.jpg"})  # a duplicate: removed
    dump_pickle(base / "paco" / "paco_part_train.pkl", train)
    dump_pickle(base / "paco" / "paco_part_val.pkl", {"cid2img": cid2img, "img2anno": img2anno})


# ---------------------------------------------------------------- iSAID-5i
def isaid_label(k: int) -> np.ndarray:
    labels = np.zeros(SIZE, dtype=np.uint8)
    labels[6:20, 8:24] = k
    labels[6:20, 24:26] = 255
    labels[22:28, 2:10] = 3 if k != 3 else 4
    return labels


def write_isaid(root: Path, trailing_newline: bool = True) -> list[str]:
    """The golden variant: fold 1, P0600..P0602 of class 6, P0700, P0701 of class 7."""
    base = root / "iSAID"
    lines = [(f"P06{i:02d}_0_256_0_256", 6) for i in range(3)] + [(f"P07{i:02d}_0_256_0_256", 7) for i in range(2)]
    for n, (name, k) in enumerate(lines):
        write_image(base / "val" / "images" / f"{name}.png", seed=90 + n)
        write_mask(base / "val" / "semantic_png" / f"{name}_instance_color_RGB.png", isaid_label(k))
    text = "\n".join(f"{name}__{k}" for name, k in lines) + ("\n" if trailing_newline else "")
    (base / "splits" / "val").mkdir(parents=True, exist_ok=True)
    (base / "splits" / "val" / "fold1.txt").write_text(text)
    return [name for name, _ in lines]


# ---------------------------------------------------------------- ISIC, Chest X-ray, SUIM, PerMIS
def write_isic(root: Path, counts: tuple[int, int, int] = (2, 3, 4)) -> dict[str, list[str]]:
    base = root / "ISIC"
    listed: dict[str, list[str]] = {}
    for c, count in zip("123", counts):
        listed[c] = []
        for i in range(count):
            stem = f"ISIC_{int(c) * 100 + i:07d}"
            write_image(base / "ISIC2018_Task1-2_Training_Input" / c / f"{stem}.jpg", seed=int(c) * 100 + i)
            write_mask(base / "ISIC2018_Task1_Training_GroundTruth" / f"{stem}_segmentation.png", block(4 + i, 22, 6, 30))
            listed[c].append(stem)
    (base / "ISIC2018_Task1-2_Training_Input" / "1" / "notes.txt").write_text("not an image")  # left out
    return listed


def write_lung(root: Path) -> None:
    base = root / "LungSegmentation"
    for n, (mask_name, image_name) in enumerate(
        (("CHNCXR_0001_0_mask.png", "CHNCXR_0001_0.png"), ("MCUCXR_0001_0.png", "MCUCXR_0001_0.png"),
         ("CHNCXR_0002_1_mask.png", "CHNCXR_0002_1.png"))
    ):
        write_image(base / "CXR_png" / image_name, seed=300 + n)
        write_mask(base / "masks" / mask_name, block(3, 25, 5 + n, 18 + n))


SUIM_CATEGORIES = ("FV", "HD", "PF", "RI", "RO", "SR", "WR")


def write_suim(root: Path) -> None:
    base = root / "SUIM"
    for i in (1, 2, 3):
        write_image(base / "images" / f"d_r_{i}_.jpg", seed=400 + i)
    for k, category in enumerate(SUIM_CATEGORIES):
        write_mask(base / "masks" / category / "d_r_1_.bmp", block(2 + k, 20, 3, 30), fmt="BMP")
        write_mask(base / "masks" / category / "d_r_2_.bmp", block(5, 25 - k, 10, 38), fmt="BMP")
        write_mask(base / "masks" / category / "d_r_3_.bmp", np.zeros(SIZE, np.uint8), fmt="BMP")  # left out


def write_permis(root: Path, videos: int = 1) -> None:
    base = root / "PerMIRS"
    for v in range(videos):
        folder = base / str(v)
        masks = []
        for f in range(3):
            write_image(folder / f"{f}.jpg", seed=500 + 3 * v + f)
            masks.append({17: block(4 + f, 24, 6 + 2 * f, 30, 1).astype(bool)})
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "masks.npz", np.array(masks, dtype=object))


WRITERS = {
    "coco": write_coco, "lvis": write_lvis, "pascal_part": write_pascal_part, "paco_part": write_paco_part,
    "isaid": write_isaid, "isic": write_isic, "lung": write_lung, "suim": write_suim, "permis": write_permis,
}
