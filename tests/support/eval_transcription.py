"""An independent transcription of the protocol's sampling rules (docs/evaluation.md), for the
tests: numpy's GLOBAL legacy RNG and `np.random.choice(seq, 1, replace=False)[0]` literally, on
the raw files, written without insid3.evaluation. Each function returns, per episode,
(class_id, target image path, [reference image paths])."""

from __future__ import annotations

import glob
import json
import os
import pickle

import numpy as np


def choice(seq):
    return np.random.choice(seq, 1, replace=False)[0]


def refs_loop(seq, target, shots, same=lambda a, b: a == b):
    refs = []
    while True:
        r = choice(seq)
        if not same(r, target):
            refs.append(r)
        if len(refs) == shots:
            return refs


def coco(root, fold, shots, n):
    base = os.path.join(root, "COCO2014")
    lists = pickle.load(open(f"{base}/splits/val/fold{fold}.pkl", "rb"))
    classes = [fold + 4 * v for v in range(20)]
    np.random.seed(0)
    out = []
    for _ in range(n):
        c = choice(classes)
        t = choice(lists[c])
        out.append((int(c), os.path.join(base, t), [os.path.join(base, r) for r in refs_loop(lists[c], t, shots)]))
    return out


def lvis(root, fold, shots, n):
    data = pickle.load(open(os.path.join(root, "LVIS", "lvis_val.pkl"), "rb"))
    keys = [k for k in data if len(data[k]) > shots]
    ori = [keys[fold + 10 * v] for v in range(len(keys) // 10)]
    np.random.seed(0)
    out = []
    for i in range(n):
        names = list(data[ori[i % len(ori)]].keys())
        t = choice(names)
        base = os.path.join(root, "LVIS", "coco")
        out.append((i % len(ori), os.path.join(base, t), [os.path.join(base, r) for r in refs_loop(names, t, shots)]))
    return out


def folder_cycle(root, dataset, shots, n):
    """ISIC, Chest X-ray and SUIM: a class per episode in turn (one for Chest X-ray)."""
    if dataset == "isic":
        base = os.path.join(root, "ISIC", "ISIC2018_Task1-2_Training_Input")
        lists = [[p for p in sorted(glob.glob(f"{base}/{c}/*")) if os.path.basename(p).split(".")[1] == "jpg"] for c in "123"]
        image = lambda p: p  # noqa: E731
    elif dataset == "lung":
        base = os.path.join(root, "LungSegmentation")
        lists = [[p for p in sorted(glob.glob(f"{base}/masks/*")) if os.path.basename(p).split(".")[1] == "png"]]

        def image(p):
            return os.path.join(base, "CXR_png", os.path.basename(p) if "MCUCXR" in p else os.path.basename(p)[:-9] + ".png")
    else:
        from PIL import Image

        base = os.path.join(root, "SUIM")
        lists = [
            [p for p in sorted(glob.glob(f"{base}/masks/{c}/*")) if (np.array(Image.open(p).convert("L")) >= 128).any()]
            for c in ("FV", "HD", "PF", "RI", "RO", "SR", "WR")
        ]

        def image(p):
            return os.path.join(base, "images", p.split("/")[-1].split(".")[0] + ".jpg")
    np.random.seed(0)
    out = []
    for i in range(n):
        k = i % len(lists)
        t = choice(lists[k])
        out.append((k, image(t), [image(r) for r in refs_loop(lists[k], t, shots)]))
    return out


def isaid(root, fold, shots, n):
    base = os.path.join(root, "iSAID")
    lines = open(f"{base}/splits/val/fold{fold}.txt").read().split("\n")[:-1]
    lines = [(line.split("__")[0], int(line.split("__")[1]) - 1) for line in lines]
    per_class = {k: [name for name, c in lines if c == k] for k in range(15)}
    np.random.seed(0)
    image = lambda name: os.path.join(base, "val/images", name) + ".png"  # noqa: E731
    return [(k, image(t), [image(r) for r in refs_loop(per_class[k], t, shots)]) for t, k in lines[:n]]


def paco_part(root, fold, shots, n):
    base = os.path.join(root, "PACO-Part")
    train = pickle.load(open(f"{base}/paco/paco_part_train.pkl", "rb"))
    val = pickle.load(open(f"{base}/paco/paco_part_val.pkl", "rb"))
    lists = {}
    for cid, entries in val["cid2img"].items():
        ids, lists[cid] = [], []
        for e in entries:
            if list(e)[0] not in ids:
                ids.append(list(e)[0])
                lists[cid].append(e)
    trc = list(train["cid2img"])
    ori = [c for c in (trc[fold + 4 * v] for v in range(112)) if c in [k for k in lists if len(lists[k]) > shots]]
    name = lambda e: "/".join(list(e.values())[0].split("/")[-2:])  # noqa: E731
    np.random.seed(0)
    out = []
    for _ in range(n):
        c = choice(ori)
        t = choice(lists[c])
        objects = list(dict.fromkeys(a["obj_ann_id"] for a in val["img2anno"][list(t)[0]] if a["category_id"] == c))
        choice(objects)
        refs = []
        while len(refs) < shots:
            r = choice(lists[c])
            if name(r) != name(t):
                refs.append(r)
                choice(list(dict.fromkeys(a["obj_ann_id"] for a in val["img2anno"][list(r)[0]] if a["category_id"] == c)))
        # the synthetic boxes never crop to nothing: no retry here
        image = lambda e: os.path.join(base, "coco", name(e))  # noqa: E731
        out.append((ori.index(c), image(t), [image(r) for r in refs]))
    return out


def pascal_part(root, fold, shots, n):
    base = os.path.join(root, "Pascal-Part/VOCdevkit/VOC2010")
    cat = json.load(open(f"{base}/all_obj_part_to_image.json"))[["animals", "indoor", "person", "vehicles"][fold]]["object"]
    pairs = [(o, p) for o in cat for p in cat[o]["part"]
             if cat[o]["part"][p]["train"] and cat[o]["part"][p]["val"] and f"{o}+{p}" != "aeroplane+TAIL"]
    total = sum(len(cat[o]["part"][p]["val"]) for o in cat for p in cat[o]["part"])

    def attempt(image_id, o, p):
        objs = [x for x in json.load(open(f"{base}/Annotations_Part_json_merged_part_classes/{image_id}.json"))["object"]
                if x["name"] == o]
        if not objs:
            return False
        ob = choice(objs)
        return any(part["name"] == p for part in ob["parts"])

    np.random.seed(0)
    out = []
    for i in range(min(n, min(total, 2500))):
        o, p = pairs[i % len(pairs)]
        val = cat[o]["part"][p]["val"]
        while True:
            q = choice(val)
            if attempt(q, o, p):
                break
        refs = []
        while len(refs) < shots:
            s = choice(val)
            if s == q or s in refs:
                continue
            if attempt(s, o, p):
                refs.append(s)
        image = lambda i: f"{base}/JPEGImages/{i}.jpg"  # noqa: E731
        out.append((i % len(pairs), image(q), [image(s) for s in refs]))
    return out
