"""Concepts mode of the web page in a real headless browser: two named concepts painted on one
reference scene, two targets segmented for both at once; the label maps the page downloads are
the server's label PNGs for the same inputs, its tint is each concept's colour, and its one COCO
file (merged from the server's per-target documents) loads in pycocotools with both categories.
Skips like tests/web/test_web_page.py without chromium or playwright."""

import io
import json
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image
from support.web_browser import (
    MISSING,
    SCENE_SIZE,
    SKIP_HERE,
    downloaded,
    paint_over,
    png_file,
    read_mask_png,
    wait_for_shots,
)

from insid3.engine.jobs.scenes import CONCEPTS, draw_scene

if SKIP_HERE:
    pytest.skip(MISSING, allow_module_level=True)
pytest_plugins = ["support.web_fixtures"]  # browser, server, page, artifacts

NAMES = ("ellipse", "rectangle")
COLOURS = ("#e6194b", "#3cb44b")  # the page's first two (engine/serve/web/colours.js)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One reference scene holding an ellipse (its concept: a known mask) and a flat blue rectangle
    (a distractor: its pixels are exactly its fill colour), and two targets holding both."""
    folder = tmp_path_factory.mktemp("web-concepts")
    scene = draw_scene(43, SCENE_SIZE, concept=0)
    rectangle = np.all(scene.image == CONCEPTS[1][0], axis=-1)
    assert rectangle.sum() > 1000
    targets = [draw_scene(44, SCENE_SIZE, concept=1), draw_scene(45, SCENE_SIZE, concept=0)]
    return {"reference": png_file(folder, "scene.png", scene.image), "masks": (scene.mask, rectangle),
            "targets": [png_file(folder, f"target{i}.png", target.image) for i, target in enumerate(targets)]}


def concept(page, index: int):
    return page.locator("#concept-list .concept").nth(index)


def api_answers(server, reference: bytes, masks: list[bytes], target: bytes) -> tuple[bytes, list[str], dict]:
    """The server's label PNG, its labels header and its COCO document for the same inputs."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        ids = []
        for mask in masks:
            files = [("image", ("scene.png", reference, "image/png")), ("mask", ("mask.png", mask, "image/png"))]
            registered = http.post("/v1/references", files=files)
            assert registered.status_code == 201, registered.text
            ids.append(registered.json()["reference_id"])
        answers = {}
        for fmt in ("label-png", "coco"):
            answer = http.post("/v1/segment", data={"reference_id": ids, "name": list(NAMES), "format": fmt},
                               files={"image": ("target.png", target, "image/png")})
            assert answer.status_code == 200, answer.text
            answers[fmt] = answer
    return answers["label-png"].content, json.loads(answers["label-png"].headers["X-Insid3-Labels"]), \
        answers["coco"].json()


def label_canvas(page, card) -> np.ndarray:
    """The (H, W, 4) RGBA pixels of a target card's label overlay."""
    pixels = card.locator("canvas.labels").evaluate("""(canvas) => ({ width: canvas.width, height: canvas.height,
        rgba: Array.from(canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data) })""")
    return np.array(pixels["rgba"], np.uint8).reshape(pixels["height"], pixels["width"], 4)


# pycocotools 2.0 meets NumPy 2 (its own decode, not our data): a DeprecationWarning per mask.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_two_concepts_on_one_scene_give_the_servers_label_maps_and_one_coco_file(page, server, files, artifacts,
                                                                                   tmp_path):
    from pycocotools.coco import COCO

    page.check("input[name=mode][value=concepts]")
    page.set_input_files("#reference-file", str(files["reference"]))
    wait_for_shots(page, 1)
    painted = []
    for index, (name, mask) in enumerate(zip(NAMES, files["masks"])):
        if index:  # a new concept starts on the shown image, its mask empty
            page.click("#add-concept")
            page.wait_for_selector(f"#concept-list .concept:nth-child({index + 1}).selected")
        concept(page, index).locator(".concept-name").fill(name)
        paint_over(page, mask, strokes=2)
        painted.append(downloaded(page, page.locator("#download-reference-mask"))[1])
        assert read_mask_png(painted[-1]).any()
    assert not (read_mask_png(painted[0]) & read_mask_png(painted[1])).all()
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("1")  # back to the first concept: shown in its colour, its mask as painted
    assert "selected" in concept(page, 0).get_attribute("class")
    assert downloaded(page, page.locator("#download-reference-mask"))[1] == painted[0]

    page.set_input_files("#target-files", [str(path) for path in files["targets"]])
    page.click("#run")
    page.locator('.target[data-state="done"]').nth(1).wait_for(timeout=60_000)
    assert page.locator("#legend li").all_inner_texts() == list(NAMES)

    reference = files["reference"].read_bytes()
    expected = [api_answers(server, reference, painted, path.read_bytes()) for path in files["targets"]]
    labelled = 0
    for index, path in enumerate(files["targets"]):
        card = page.locator(".target").nth(index)
        assert "backbone" in card.locator(".timings").inner_text()
        name, label_png = downloaded(page, card.locator(".download"))
        assert name == f"{path.stem}.png"
        server_png, labels, _ = expected[index]
        assert labels == list(NAMES)
        label = np.asarray(Image.open(io.BytesIO(label_png)))
        np.testing.assert_array_equal(label, np.asarray(Image.open(io.BytesIO(server_png))))
        tint = label_canvas(page, card)
        assert tint.shape[:2] == label.shape
        assert (tint[label == 0, 3] == 0).all()
        for value, colour in enumerate(COLOURS, start=1):
            rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
            if (label == value).any():
                assert np.abs(tint[label == value, :3].astype(int) - rgb).max() <= 2, (index, value)
        labelled += int(label.any())
    assert labelled, "the scenes should give at least one non-empty label map"

    name, coco_bytes = downloaded(page, page.locator("#download-concepts-coco"))
    assert name == "concepts.coco.json"
    (tmp_path / name).write_bytes(coco_bytes)
    coco = COCO(str(tmp_path / name))
    assert [category["name"] for category in coco.loadCats(coco.getCatIds())] == list(NAMES)
    assert [image["file_name"] for image in coco.loadImgs(coco.getImgIds())] == [p.name for p in files["targets"]]
    assert sorted(a["id"] for a in coco.dataset["annotations"]) == list(range(1, len(coco.dataset["annotations"]) + 1))
    for image_id, (_, _, server_coco) in enumerate(expected, start=1):
        ours = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        theirs = server_coco["annotations"]
        assert [a["category_id"] for a in ours] == [a["category_id"] for a in theirs]
        for annotation, answer in zip(ours, theirs):
            assert annotation["segmentation"] == answer["segmentation"] and annotation["area"] == answer["area"]
            assert coco.annToMask(annotation).sum() == answer["area"]
    page.screenshot(path=str(artifacts / "web-concepts.png"))


def test_concepts_that_cannot_be_sent_are_explained(page, files):
    page.check("input[name=mode][value=concepts]")
    page.set_input_files("#reference-file", str(files["reference"]))
    wait_for_shots(page, 1)
    concept(page, 0).locator(".concept-name").fill("shape")
    paint_over(page, files["masks"][0], strokes=1)
    page.click("#add-concept")
    page.wait_for_selector("#concept-list .concept:nth-child(2).selected")
    concept(page, 1).locator(".concept-name").fill("shape")
    page.set_input_files("#target-files", str(files["targets"][0]))
    page.click("#run")
    message = page.locator("#reference-error .message")
    assert message.inner_text() == "Two concepts are named “shape”: give each its own name."

    concept(page, 1).locator(".concept-name").fill("blank")  # its mask is still empty: the server refuses it
    assert page.locator("#reference-error").is_hidden()
    page.click("#run")
    page.wait_for_function("() => !document.querySelector('#reference-error').hidden")
    assert message.inner_text() == ("In the concept “blank”, the reference mask of shot 1 is empty: "
                                    "paint over the object with the brush (B) first.")
    assert "Server: mask[0] is empty" in page.locator("#reference-error .detail").inner_text()


def png_bytes(image: Image.Image) -> list[int]:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return list(buffer.getvalue())


def every_filter_png(gray: np.ndarray) -> list[int]:
    """An 8-bit gray PNG whose rows use PNG's five filter types in turn (Pillow never writes
    type 3, Average), each row's bytes predicted as the PNG specification says."""
    height, width = gray.shape
    pixels = gray.astype(np.int64)
    rows = []
    for y in range(height):
        kind, row = y % 5, pixels[y]
        up = pixels[y - 1] if y else np.zeros(width, np.int64)
        left = np.concatenate([[0], row[:-1]])
        up_left = np.concatenate([[0], up[:-1]])
        estimate = np.abs(left + up - up_left - np.stack([left, up, up_left]))
        paeth = np.choose(np.argmin(estimate, axis=0), [left, up, up_left])  # ties: left, then up (argmin's first)
        predicted = [np.zeros(width, np.int64), left, up, (left + up) // 2, paeth][kind]
        rows.append(bytes([kind]) + ((row - predicted) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return list(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
                + chunk(b"IEND", b""))


def test_label_pngs_are_read_as_stored_and_coco_documents_merge_by_name(page):
    """readPngValues gives the stored values of PNGs as Pillow writes them (palette of 256 or 4
    colours, 8-bit gray with row filters, 16-bit gray; odd widths) and of one using every row
    filter; mergeCoco renumbers images and annotations and maps each document's categories by name."""
    from insid3.engine.jobs.outputs.label_png import label_image

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, (23, 37)).astype(np.uint8)
    few = Image.fromarray(labels, mode="L").convert("P")
    few.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])  # 4 colours: Pillow writes 2 bits a pixel
    gray = np.clip(np.add.outer(np.arange(23) * 9, np.arange(37) * 5) + rng.integers(0, 9, (23, 37)), 0, 255)
    images = {"label": label_image(labels, 3), "few": few, "gray": Image.fromarray(gray.astype(np.uint8)),
              "deep": Image.fromarray((rng.integers(0, 65536, (23, 37))).astype(np.uint16))}
    read = page.evaluate("""async (files) => {
        const { readPngValues } = await import("/web/labels.js");
        const out = {};
        for (const [name, bytes] of Object.entries(files)) {
          const value = await readPngValues(new Blob([new Uint8Array(bytes)]));
          out[name] = { width: value.width, height: value.height, data: Array.from(value.data) };
        }
        return out;
    }""", {**{name: png_bytes(image) for name, image in images.items()}, "filters": every_filter_png(gray)})
    expected = {**{name: np.asarray(image) for name, image in images.items()}, "filters": gray}
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(bytes(every_filter_png(gray))))), gray)
    for name, values in expected.items():
        got = read[name]
        np.testing.assert_array_equal(np.array(got["data"]).reshape(got["height"], got["width"]), values, err_msg=name)

    def document(file_name, names, annotations):
        return {"images": [{"id": 1, "file_name": file_name, "height": 4, "width": 5}],
                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
                "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "area": 1} for i, c in
                                enumerate(annotations)]}

    merged = page.evaluate("""async (entries) => (await import("/web/labels.js")).mergeCoco(entries, ["a", "b"])""",
                           [{"fileName": "dir/one.png", "coco": document("one.png", ["a", "b"], [1, 2])},
                            {"fileName": "two.png", "coco": document("two.png", ["b", "c"], [1, 2, 2])}])
    assert merged["categories"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
    assert [(i["id"], i["file_name"]) for i in merged["images"]] == [(1, "dir/one.png"), (2, "two.png")]
    assert [(a["id"], a["image_id"], a["category_id"]) for a in merged["annotations"]] == [
        (1, 1, 1), (2, 1, 2), (3, 2, 2), (4, 2, 3), (5, 2, 3)]
