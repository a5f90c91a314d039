"""insid3-segment with named concepts, each format read back by the tool that defines it:
pycocotools for COCO, Pillow for the indexed PNG and its legend, a parser of Ultralytics'
documented segmentation rows (docs.ultralytics.com/datasets/segment) for YOLO; resuming, and
refusing another job's folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import ndimage
from support.commands import last_line
from support.scenes import api_results, save_examples
from test_formats_units import rasterise

from insid3.engine.cli.segment import main
from insid3.engine.jobs.outputs import masks as mask_outputs
from insid3.engine.jobs.outputs.coco import COCO_FILE
from insid3.engine.jobs.scenes import draw_scene

EXAMPLES = (("ellipse", 20, 0), ("rectangle", 21, 1), ("rectangle", 31, 1), ("triangle", 22, 2))
NAMES = ("ellipse", "rectangle", "triangle")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("concepts")
    save_examples(root, EXAMPLES)
    (root / "targets").mkdir()
    for seed in range(3):
        Image.fromarray(draw_scene(50 + seed, (100 + 10 * seed, 140), concept=seed).image).save(
            root / "targets" / f"t{seed}.jpg")
    return root


@pytest.fixture(scope="module")
def expected(segmenter, workspace):
    return api_results(segmenter, workspace, EXAMPLES)


def concept_flags(root):
    return [f"--concept={name}={root / f'ex{i}.png'}:{root / f'ex{i}_mask.png'}" for i, (name, _, _) in
            enumerate(EXAMPLES)]


def run(bundle, root, out, *extra, concepts=None):
    argv = ["--bundle", str(bundle), "--backend", "onnxruntime", "--batch-size", "2", *(concepts or
            concept_flags(root)), *extra, "--out", str(out), str(root / "targets")]
    return main(argv)


def test_png_writes_one_mask_per_concept(tiny_bundle, workspace, expected, tmp_path):
    assert run(tiny_bundle, workspace, tmp_path / "o", "--overlay") == 0
    for stem, result in expected.items():
        for concept in result:
            mask = Image.open(tmp_path / "o" / f"{stem}.{concept.name}.png")
            assert mask.mode == "L"
            np.testing.assert_array_equal(np.asarray(mask) > 0, concept.mask)
        assert Image.open(tmp_path / "o" / f"{stem}.overlay.jpg").size == result.original_size[::-1]


def test_a_rerun_that_adds_overlay_draws_the_targets_done_without_it(tiny_bundle, workspace, tmp_path, capsys):
    assert run(tiny_bundle, workspace, tmp_path / "o") == 0 and not list((tmp_path / "o").glob("*.overlay.jpg"))
    assert run(tiny_bundle, workspace, tmp_path / "o", "--overlay") == 0
    assert "3 segmented, 0 already done" in last_line(capsys)
    assert len(list((tmp_path / "o").glob("*.overlay.jpg"))) == 3


def test_label_png_is_an_indexed_png_with_its_legend(tiny_bundle, workspace, expected, tmp_path):
    assert run(tiny_bundle, workspace, tmp_path / "o", "--format", "label-png") == 0
    legend = json.loads((tmp_path / "o" / "legend.json").read_text())
    assert [(e["value"], e["name"]) for e in legend["labels"]] == list(enumerate(("background", *NAMES)))
    for stem, result in expected.items():
        image = Image.open(tmp_path / "o" / f"{stem}.png")
        assert image.mode == "P" and image.size == result.original_size[::-1]
        np.testing.assert_array_equal(np.asarray(image), result.label_map())
        palette = np.array(image.getpalette()).reshape(-1, 3)
        for entry in legend["labels"]:
            assert palette[entry["value"]].tolist() == entry["color"]


@pytest.mark.parametrize("instances", [False, True])
def test_coco_loads_in_pycocotools(tiny_bundle, workspace, expected, tmp_path, instances):
    from pycocotools import mask as coco_mask
    from pycocotools.coco import COCO

    extra = ["--format", "coco"] + (["--instances", "--min-area", "3"] if instances else [])
    assert run(tiny_bundle, workspace, tmp_path / "o", *extra) == 0
    coco = COCO(str(tmp_path / "o" / COCO_FILE))
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [(1, n) for n in NAMES[:1]] + \
        [(2, "rectangle"), (3, "triangle")]
    for image in coco.loadImgs(coco.getImgIds()):
        result = expected[Path(image["file_name"]).stem]
        assert (image["height"], image["width"]) == result.original_size
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        wanted = [(i.label, i.mask) for i in result.instances(min_area=3)] if instances else \
            [(c.label, c.mask) for c in result if c.mask.any()]
        assert len(annotations) == len(wanted)
        for annotation, (label, mask) in zip(annotations, wanted):
            assert annotation["category_id"] == label and annotation["iscrowd"] == 0
            np.testing.assert_array_equal(coco.annToMask(annotation) > 0, mask)
            assert annotation["area"] == int(mask.sum()) == int(coco_mask.area(annotation["segmentation"]))
            np.testing.assert_allclose(annotation["bbox"], coco_mask.toBbox(annotation["segmentation"]))


def test_coco_polygons_cover_the_masks(tiny_bundle, workspace, expected, tmp_path):
    from pycocotools.coco import COCO

    assert run(tiny_bundle, workspace, tmp_path / "o", "--format", "coco", "--segmentation", "polygon",
               "--simplify", "0") == 0
    coco = COCO(str(tmp_path / "o" / COCO_FILE))
    checked = 0
    for annotation in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(annotation["image_id"])[0]
        mask = expected[Path(image["file_name"]).stem].concepts[annotation["category_id"] - 1].mask
        assert isinstance(annotation["segmentation"], list) and all(len(p) >= 6 for p in annotation["segmentation"])
        drawn = coco.annToMask(annotation) > 0
        assert (drawn & mask).sum() / (drawn | mask).sum() >= 0.9  # holes are not polygons
        assert annotation["area"] == int(mask.sum())
        checked += 1
    assert checked


def parse_yolo_segment_labels(text: str, classes: int) -> list[tuple[int, np.ndarray]]:
    """Ultralytics' segmentation rows as their documentation defines them: one object per row,
    `<class-index> <x1> <y1> ... <xn> <yn>`, an integer class, at least 3 (x, y) pairs, every
    coordinate normalised to [0, 1] by the image's width and height."""
    objects = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        assert fields[0].isdigit() and 0 <= int(fields[0]) < classes, line
        values = np.array([float(v) for v in fields[1:]])
        assert values.size % 2 == 0 and values.size >= 6, line
        assert values.min() >= 0 and values.max() <= 1, line
        objects.append((int(fields[0]), values.reshape(-1, 2)))
    return objects


def test_yolo_seg_rows_follow_ultralytics_conventions(tiny_bundle, workspace, expected, tmp_path):
    out = tmp_path / "o"
    assert run(tiny_bundle, workspace, out, "--format", "yolo-seg", "--min-area", "3", "--simplify", "0") == 0
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(NAMES)) and Path(data["path"]) == out.resolve()
    assert {"train", "val"} <= set(data)
    for stem, result in expected.items():
        rows = parse_yolo_segment_labels((out / "labels" / f"{stem}.txt").read_text(), len(data["names"]))
        instances = result.instances(min_area=3)
        assert sorted({label for label, _ in rows}) == sorted({i.label - 1 for i in instances})
        height, width = result.original_size
        for label in range(len(NAMES)):  # each class's rows cover its components' pixels, and at most their holes
            drawn = rasterise([points * (width, height) for found, points in rows if found == label],
                              result.original_size)
            mine = [i.mask for i in instances if i.label - 1 == label]
            covered = np.any(mine, axis=0) if mine else np.zeros_like(drawn)
            assert not (covered & ~drawn).any() and not (drawn & ~ndimage.binary_fill_holes(covered)).any()


def test_a_concepts_file_is_the_same_job_as_the_flags(tiny_bundle, workspace, tmp_path, capsys):
    listing = {}
    for index, (name, _, _) in enumerate(EXAMPLES):
        listing.setdefault(name, []).append({"image": f"ex{index}.png", "mask": f"ex{index}_mask.png"})
    (workspace / "concepts.yaml").write_text(yaml.safe_dump(listing))
    (workspace / "concepts.json").write_text(json.dumps(listing))
    out = tmp_path / "o"
    assert run(tiny_bundle, workspace, out, "--format", "label-png",
               concepts=["--concepts", str(workspace / "concepts.yaml")]) == 0
    capsys.readouterr()
    for concepts in (["--concepts", str(workspace / "concepts.json")], None):  # the same job: nothing to redo
        assert run(tiny_bundle, workspace, out, "--format", "label-png", concepts=concepts) == 0
        assert "0 segmented, 3 already done" in capsys.readouterr().err
    reordered = list(reversed(concept_flags(workspace)))
    assert run(tiny_bundle, workspace, out, "--format", "label-png", concepts=reordered) == 2
    assert "(the concepts or their reference images or masks changed)" in capsys.readouterr().err


def test_ctrl_c_keeps_what_is_done_and_the_rerun_resumes(tiny_bundle, workspace, tmp_path, capsys, monkeypatch):
    real, seen = mask_outputs.PngOutputs.write, []

    def interrupted(self, target, result):
        if seen:
            raise KeyboardInterrupt
        seen.append(target)
        real(self, target, result)

    monkeypatch.setattr(mask_outputs.PngOutputs, "write", interrupted)
    assert run(tiny_bundle, workspace, tmp_path / "o") == 130
    assert "interrupted: 1 segmented" in capsys.readouterr().err
    assert len(list((tmp_path / "o").glob("t*.png"))) == len(NAMES)
    monkeypatch.undo()
    assert run(tiny_bundle, workspace, tmp_path / "o") == 0
    assert "2 segmented, 1 already done" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--format", "png", "--instances"], "--instances applies to --format coco"),
    (["--format", "yolo-seg", "--segmentation", "polygon"], "--segmentation polygon applies to --format coco"),
    # issue 21.6: --ref with --concept says "not both" (it said "give ... or named" before)
    (["--ref", "a.png", "--ref-mask", "b.png"], "--ref and --concept/--concepts: name the concept to find one way, not both"),
    (["--min-area", "-1"], "--min-area and --simplify must be >= 0"),
])
def test_conflicting_flags_are_usage_errors(tiny_bundle, workspace, tmp_path, capsys, extra, message):
    exit_info_code = run(tiny_bundle, workspace, tmp_path / "o", *extra)
    assert exit_info_code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("flag, message", [
    ("--concept=cat", "--concept cat: expected NAME=IMAGE:MASK"),
    ("--concept=a/b=x.png:y.png", "concept name 'a/b' must be"),
    ("--concept=cat=missing.png:y.png", "concept 'cat': image missing.png does not exist"),
    ("--concepts=missing.yaml", "--concepts missing.yaml does not exist"),
])
def test_bad_concepts_are_one_line(tiny_bundle, workspace, tmp_path, capsys, flag, message):
    assert run(tiny_bundle, workspace, tmp_path / "o", concepts=[flag]) == 2
    line = last_line(capsys)
    assert line.startswith("insid3-segment: error:") and message in line
    assert not (tmp_path / "o").exists()  # checked before the output folder is made
