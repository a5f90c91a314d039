"""The format writers' pieces on hand-made masks: polygons, the palette, label images, concept
specs and the manifest's format descriptions."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from insid3.engine.jobs.concept_specs import ConceptSpecError, merge, parse_concept_flag, read_concepts_file
from insid3.engine.jobs.outputs import OutputOptions
from insid3.engine.jobs.outputs.label_png import label_image, legend
from insid3.engine.jobs.outputs.palette import label_colors
from insid3.engine.jobs.outputs.polygons import mask_polygons


def rasterise(polygons, size):
    """Pixels whose centre lies inside a polygon (the continuous coordinates COCO and YOLO use)."""
    height, width = size
    canvas = Image.new("L", (width * 4, height * 4), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon([(4 * x, 4 * y) for x, y in polygon], fill=255)
    return np.asarray(canvas)[2::4, 2::4] > 0  # samples at the pixel centres


def test_axis_aligned_components_become_their_exact_outlines():
    mask = np.zeros((20, 30), bool)
    mask[2:8, 3:12] = True  # a rectangle
    mask[12:18, 15:25] = True
    mask[12:15, 15:18] = False  # an L shape
    mask[10, 28] = True  # one pixel
    mask[1, 20:22] = True  # two pixels
    mask[15, 3], mask[16, 4] = True, True  # two pixels touching by a corner: two squares
    polygons = mask_polygons(mask, tolerance=0)
    assert len(polygons) == 6 and all(p.ndim == 2 and p.shape[1] == 2 and len(p) >= 3 for p in polygons)
    np.testing.assert_array_equal(rasterise(polygons, mask.shape), mask)
    rectangle = next(p for p in polygons if p[:, 0].min() == 3 and p[:, 1].min() == 2)
    assert sorted(map(tuple, rectangle)) == [(3, 2), (3, 8), (12, 2), (12, 8)]  # the pixels' outer corners
    assert {tuple(p) for p in next(p for p in polygons if p[:, 0].min() == 28)} == {(28, 10), (29, 10), (28, 11),
                                                                                    (29, 11)}
    assert len(next(p for p in polygons if p[:, 0].min() == 15)) == 6  # the L: collinear vertices dropped


def test_any_slope_is_exact_without_simplification():
    """Outlines cover a mask's pixels exactly, plus at most its holes (background enclosed under
    4-connectivity: whether a pocket open only at a corner is inside is GEOS's choice)."""
    rng = np.random.default_rng(0)
    for _ in range(8):
        blobs = rng.random((12, 16)) < 0.4
        mask = np.asarray(Image.fromarray(blobs.astype(np.uint8) * 255).resize((97, 61), Image.BILINEAR)) > 127
        drawn = rasterise(mask_polygons(mask, 0), mask.shape)
        assert not (mask & ~drawn).any() and not (drawn & ~ndimage.binary_fill_holes(mask)).any()


def test_simplification_keeps_a_disc_close_and_drops_vertices():
    yy, xx = np.mgrid[:60, :60]
    disc = (yy - 30) ** 2 + (xx - 30) ** 2 < 20**2
    exact, simple = mask_polygons(disc, tolerance=0), mask_polygons(disc, tolerance=1.0)
    assert len(exact) == len(simple) == 1 and len(simple[0]) < len(exact[0]) / 2
    for polygons, floor in ((exact, 0.999), (simple, 0.97)):
        drawn = rasterise(polygons, disc.shape)
        assert (drawn & disc).sum() / (drawn | disc).sum() >= floor


def test_holes_are_filled_and_empty_masks_give_nothing():
    ring = np.zeros((20, 20), bool)
    ring[2:18, 2:18] = True
    ring[6:14, 6:14] = False
    polygons = mask_polygons(ring, tolerance=0)
    assert len(polygons) == 1 and rasterise(polygons, ring.shape)[6:14, 6:14].all()
    assert mask_polygons(np.zeros((5, 5), bool)) == []


def test_the_palette_is_pascal_vocs():
    colors = label_colors(8)
    assert colors.tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128],
                               [0, 128, 128], [128, 128, 128]]
    assert label_colors(256)[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in label_colors(256)}) == 256


def test_label_images_read_back_in_pillow(tmp_path):
    label = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    label_image(label, 3).save(tmp_path / "a.png")
    back = Image.open(tmp_path / "a.png")
    assert back.mode == "P"
    np.testing.assert_array_equal(np.asarray(back), label)
    palette = np.array(back.getpalette()[: 4 * 3]).reshape(4, 3)
    assert palette.tolist() == [entry["color"] for entry in legend(("a", "b", "c"))["labels"]]
    wide = np.array([[0, 300], [299, 1]], np.uint16)
    label_image(wide, 300).save(tmp_path / "b.png")
    back = Image.open(tmp_path / "b.png")
    assert back.mode in ("I;16", "I") and np.asarray(back).tolist() == wide.tolist()
    assert [e["name"] for e in legend(("cat", "dog"))["labels"]] == ["background", "cat", "dog"]


def test_concept_flags_and_files(tmp_path):
    for name in ("a.png", "a_mask.png", "b:1.png", "b_mask.png"):
        (tmp_path / name).write_bytes(b"")
    spec = parse_concept_flag(f"cat={tmp_path}/a.png:{tmp_path}/a_mask.png")
    assert spec.name == "cat" and spec.shots == ((tmp_path / "a.png", tmp_path / "a_mask.png"),)
    spec = parse_concept_flag(f"dog={tmp_path}/b:1.png:{tmp_path}/b_mask.png")  # a ':' inside a file name
    assert spec.shots == ((tmp_path / "b:1.png", tmp_path / "b_mask.png"),)
    for bad, why in (("cat", "expected NAME=IMAGE:MASK"), ("cat=a.png", "one ':'"), ("a/b=x:y", "concept name"),
                     ("=x:y", "concept name"), (" cat=x:y", "concept name")):
        with pytest.raises(ConceptSpecError, match=why):
            parse_concept_flag(bad)
    (tmp_path / "c.yaml").write_text("cat:\n  - {image: a.png, mask: a_mask.png}\n  - [b:1.png, b_mask.png]\n"
                                     "traffic light: {image: a.png, mask: a_mask.png}\n")
    (tmp_path / "c.json").write_text(json.dumps({"cat": [{"image": "a.png", "mask": "a_mask.png"}]}))
    from_yaml = read_concepts_file(tmp_path / "c.yaml")
    assert [s.name for s in from_yaml] == ["cat", "traffic light"]
    assert from_yaml[0].shots == ((tmp_path / "a.png", tmp_path / "a_mask.png"),
                                  (tmp_path / "b:1.png", tmp_path / "b_mask.png"))
    merged = merge(read_concepts_file(tmp_path / "c.json") + from_yaml)
    assert [(s.name, len(s.shots)) for s in merged] == [("cat", 3), ("traffic light", 1)]
    for text, why in (("[1, 2]", "mapping of concept names"), ("cat: []", "needs a list of examples"),
                      ("cat: [{image: a.png}]", "an example is"),
                      ("cat: [oops", r"not valid YAML: expected ',' or '\]', but got '<stream end>' \(line 1, column 11\)"),
                      ("cat: [[a.png, a_mask.png]]\ncat: [[b:1.png, b_mask.png]]", "the key 'cat' is given twice"),
                      ("cat: [{image: a.png, image: b.png, mask: a_mask.png}]", "the key 'image' is given twice")):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(ConceptSpecError, match=why):
            read_concepts_file(tmp_path / "bad.yaml")
    (tmp_path / "merged.yaml").write_text("cat: [&a {image: a.png, mask: a_mask.png}]\ndog: [{<<: *a, mask: b_mask.png}]")
    assert read_concepts_file(tmp_path / "merged.yaml")[1].shots == ((tmp_path / "a.png", tmp_path / "b_mask.png"),)
    for text, why in (('{"cat": [["a.png", "a_mask.png"]], "cat": []}', "the key 'cat' is given twice"),
                      ('{"cat": [', "not valid JSON: Expecting value: line 1 column 10")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ConceptSpecError, match=why):
            read_concepts_file(tmp_path / "bad.json")
    with pytest.raises(ConceptSpecError, match="does not exist"):
        read_concepts_file(tmp_path / "none.json")
    with pytest.raises(ConceptSpecError, match="is a folder: give a JSON or YAML file"):
        read_concepts_file(tmp_path)


def test_format_descriptions_name_what_changes_the_files():
    names = ("a",)
    assert OutputOptions(format="png", names=names, overlay=True).describe() == "png"
    assert OutputOptions(format="coco-rle", names=names).describe() == "coco-rle"
    assert OutputOptions(format="coco", names=names, instances=True, min_area=5).describe() == "coco rle instances>=5px"
    assert OutputOptions(format="coco", names=names, segmentation="polygon").describe() == "coco polygon tolerance=1px"
    assert OutputOptions(format="yolo-seg", names=names, tolerance=0.5).describe() == \
        "yolo-seg components>=0px tolerance=0.5px"
