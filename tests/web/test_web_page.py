"""The web page of insid3-serve in a real headless browser (Debian's chromium, Playwright).

A real server on loopback with the tiny random-init bundle; the page is driven as a person
would: a reference loaded and painted with synthesised pointer events, targets picked, masks
downloaded. What the page downloads is checked against what the API answers for the same inputs.

Without chromium or playwright these tests skip with one reason, except in CI (CI=true), where
a missing browser is a failure: CI must run them.
"""

import io
import json

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

from insid3.engine.jobs.scenes import draw_scene

if SKIP_HERE:
    pytest.skip(MISSING, allow_module_level=True)
pytest_plugins = ["support.web_fixtures"]  # browser, server, page, artifacts


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two reference shots (their scenes, for where to paint) and two targets of one concept, as PNG files."""
    folder = tmp_path_factory.mktemp("web-files")
    shots = [draw_scene(10 + i, SCENE_SIZE, concept=0) for i in range(2)]
    targets = [draw_scene(20 + i, SCENE_SIZE, concept=0) for i in range(2)]
    too_large = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)  # 120,000 pixels
    return {
        "shots": [(png_file(folder, f"ref{i}.png", scene.image), scene) for i, scene in enumerate(shots)],
        "targets": [png_file(folder, f"target{i}.png", scene.image) for i, scene in enumerate(targets)],
        "too_large": png_file(folder, "too-large.png", too_large),
    }


def api_masks(server, shots: list[tuple[bytes, bytes]], targets: list[bytes]) -> list[np.ndarray]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        upload = [item for image, mask in shots
                  for item in (("image", ("ref.png", image, "image/png")), ("mask", ("mask.png", mask, "image/png")))]
        registered = http.post("/v1/references", files=upload)
        assert registered.status_code == 201, registered.text
        masks = []
        for target in targets:
            answer = http.post("/v1/segment", data={"reference_id": registered.json()["reference_id"]},
                               files={"image": ("target.png", target, "image/png")})
            assert answer.status_code == 200, answer.text
            masks.append(np.asarray(Image.open(io.BytesIO(answer.content))) > 0)
        return masks


# pycocotools 2.0 meets NumPy 2 (its own decode, not our data): a DeprecationWarning per mask.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_painted_reference_segments_targets_as_the_api_does(page, server, files, artifacts, tmp_path):
    from pycocotools.coco import COCO

    painted = []
    for index, (path, scene) in enumerate(files["shots"]):
        page.set_input_files("#reference-file" if index == 0 else "#shot-file", str(path))
        wait_for_shots(page, index + 1)
        paint_over(page, scene.mask)
        name, mask_png = downloaded(page, page.locator("#download-reference-mask"))
        assert name == f"ref{index}.mask.png" and read_mask_png(mask_png).shape == scene.mask.shape
        assert read_mask_png(mask_png).any()
        painted.append((path.read_bytes(), mask_png))
    assert page.locator("#shots .shot").count() == 2

    page.fill("#category", "thing")
    page.set_input_files("#target-files", [str(path) for path in files["targets"]])
    page.click("#run")
    cards = page.locator(".target")
    page.locator('.target[data-state="done"]').nth(1).wait_for(timeout=60_000)
    assert cards.count() == 2

    expected = api_masks(server, painted, [path.read_bytes() for path in files["targets"]])
    assert any(mask.any() for mask in expected), "the scenes should give at least one non-empty mask"
    for index, path in enumerate(files["targets"]):
        card = cards.nth(index)
        assert "backbone" in card.locator(".timings").inner_text()
        assert card.locator(".overlay").is_visible()
        name, mask_png = downloaded(page, card.locator(".download"))
        assert name == f"{path.stem}.png"
        np.testing.assert_array_equal(read_mask_png(mask_png), expected[index])

    name, coco_bytes = downloaded(page, page.locator("#download-coco"))
    assert name == "masks.coco.json"
    coco_path = tmp_path / name
    coco_path.write_bytes(coco_bytes)
    coco = COCO(str(coco_path))
    assert [cat["name"] for cat in coco.loadCats(coco.getCatIds())] == ["thing"]
    by_name = {image["file_name"]: image for image in coco.dataset["images"]}
    assert sorted(by_name) == sorted(path.name for path in files["targets"])
    for index, path in enumerate(files["targets"]):
        image = by_name[path.name]
        assert (image["height"], image["width"]) == expected[index].shape
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert len(annotations) == int(expected[index].any())
        for annotation in annotations:
            np.testing.assert_array_equal(coco.annToMask(annotation).astype(bool), expected[index])
            assert annotation["area"] == int(expected[index].sum()) and annotation["iscrowd"] == 0

    page.uncheck("#show-overlay")
    assert not cards.nth(0).locator(".overlay").is_visible()
    page.check("#show-overlay")
    screenshot = artifacts / "web.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 0


def test_brush_eraser_undo_and_an_empty_mask_in_plain_words(page, files):
    path, scene = files["shots"][0]
    page.set_input_files("#reference-file", str(path))
    wait_for_shots(page, 1)
    paint_over(page, scene.mask)
    painted = read_mask_png(downloaded(page, page.locator("#download-reference-mask"))[1]).sum()
    page.keyboard.press("e")
    assert page.get_attribute("#tool-eraser", "aria-pressed") == "true"
    paint_over(page, scene.mask, strokes=1)
    erased = read_mask_png(downloaded(page, page.locator("#download-reference-mask"))[1]).sum()
    assert 0 < erased < painted
    page.keyboard.press("b")
    assert page.get_attribute("#tool-brush", "aria-pressed") == "true"
    for _ in range(4):  # the eraser stroke, then the three brush strokes
        page.keyboard.press("Control+z")
    assert not read_mask_png(downloaded(page, page.locator("#download-reference-mask"))[1]).any()

    page.set_input_files("#target-files", str(files["targets"][0]))
    page.click("#run")
    error = page.locator("#reference-error")
    error.wait_for()
    assert "The reference mask of shot 1 is empty: paint over the object" in error.locator(".message").inner_text()
    assert "Server: mask[0] is empty" in error.locator(".detail").inner_text()


def test_an_image_over_the_pixel_limit_is_explained_and_the_rest_finish(page, files):
    path, scene = files["shots"][0]
    page.set_input_files("#reference-file", str(path))
    wait_for_shots(page, 1)
    paint_over(page, scene.mask)
    page.set_input_files("#target-files", [str(files["too_large"]), str(files["targets"][1])])
    page.click("#run")
    page.locator('.target[data-state="done"]').wait_for(timeout=60_000)
    failed = page.locator('.target[data-state="failed"]')
    failed.wait_for(timeout=60_000)
    assert failed.locator(".name").inner_text() == "too-large.png"
    assert failed.locator(".status").inner_text() == (
        "The image is 400×300 pixels (0.12 megapixels); this server accepts at most 0.10 megapixels per image.")
    assert "exceeds the limit of 100000" in failed.locator(".detail").inner_text()
    assert page.locator("#progress").inner_text() == "1 of 2 segmented · 1 failed"


def test_a_busy_server_is_waited_out_and_a_lost_one_is_named(page, files):
    """503 with Retry-After (the queue is full) is retried after it; a dropped connection is a failure in words."""
    answered = {"target0.png": 0}

    def flaky(route):
        body = route.request.post_data_buffer or b""
        if b'filename="target0.png"' in body and answered["target0.png"] == 0:
            answered["target0.png"] += 1
            route.fulfill(status=503, headers={"Retry-After": "1"}, content_type="application/json",
                          body=json.dumps({"detail": "the queue is full (64 targets waiting): retry later"}))
        elif b'filename="target1.png"' in body:
            route.abort("connectionrefused")
        else:
            route.continue_()

    page.route("**/v1/segment", flaky)
    path, scene = files["shots"][0]
    page.set_input_files("#reference-file", str(path))
    wait_for_shots(page, 1)
    paint_over(page, scene.mask)
    page.set_input_files("#target-files", [str(target) for target in files["targets"]])
    page.click("#run")
    page.wait_for_function("""() => [...document.querySelectorAll('.target .status')].some(
        (status) => status.textContent === 'The server is busy with other images. Trying again in 1 s…')""")
    done, failed = page.locator('.target[data-state="done"]'), page.locator('.target[data-state="failed"]')
    done.wait_for(timeout=60_000)
    failed.wait_for(timeout=60_000)
    assert done.locator(".name").inner_text() == "target0.png" and answered["target0.png"] == 1
    assert failed.locator(".status").inner_text() == "The server cannot be reached: is insid3-serve still running?"


def quadrants_jpeg(orientation: int) -> tuple[bytes, np.ndarray]:
    """A 48 x 32 JPEG of four flat colours with an EXIF orientation tag, and its stored pixels."""
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:16, :24], stored[:16, 24:], stored[16:, :24], stored[16:, 24:] = (230, 20, 20), (20, 230, 20), \
        (20, 20, 230), (230, 230, 20)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue(), np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def test_rotated_jpegs_are_painted_on_the_grid_the_server_reads(page):
    """The browser applies EXIF orientation; PIL (the server) does not: the page undoes it."""
    jpegs = {orientation: quadrants_jpeg(orientation) for orientation in range(1, 9)}
    seen = page.evaluate("""async (files) => {
        const { storedCanvas } = await import("/web/orientation.js");
        const out = {};
        for (const [orientation, bytes] of Object.entries(files)) {
          const canvas = await storedCanvas(new File([new Uint8Array(bytes)], "x.jpg", { type: "image/jpeg" }));
          const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
          out[orientation] = { width: canvas.width, height: canvas.height, rgba: Array.from(pixels) };
        }
        return out;
    }""", {str(k): list(v[0]) for k, v in jpegs.items()})
    for orientation, (_, stored) in jpegs.items():
        got = seen[str(orientation)]
        assert (got["height"], got["width"]) == stored.shape[:2], orientation
        rgb = np.array(got["rgba"], np.uint8).reshape(got["height"], got["width"], 4)[..., :3]
        for y, x in ((8, 12), (8, 36), (24, 12), (24, 36)):  # each quadrant's centre
            assert np.abs(rgb[y, x].astype(int) - stored[y, x]).max() < 40, (orientation, y, x)


def test_match_mode_finds_clicked_points_as_the_api_does(page, server, files):
    from insid3.engine.jobs.match_outputs import COORDINATES, MatchRecord

    path, scene = files["shots"][0]
    page.set_input_files("#reference-file", str(path))
    wait_for_shots(page, 1)
    page.check("input[name=mode][value=match]")
    assert page.inner_text("#run") == "Match" and not page.locator("#tool-brush").is_visible()
    box = page.locator("#reference-frame canvas.shot-image").bounding_box()
    for fx, fy in ((0.2, 0.3), (0.5, 0.5), (0.8, 0.7), (0.6, 0.2)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.keyboard.press("Control+z")  # the fourth point goes again
    assert page.locator("#reference-points .marker").count() == 3
    page.set_input_files("#target-files", [str(target) for target in files["targets"]])
    page.click("#run")
    page.locator('.target[data-state="done"]').nth(1).wait_for(timeout=60_000)

    records = []
    for index, target in enumerate(files["targets"]):
        card = page.locator(".target").nth(index)
        assert card.locator(".markers .marker").count() == 3 and "backbone" in card.locator(".timings").inner_text()
        name, data = downloaded(page, card.locator(".download"))
        assert name == f"{target.stem}.json"
        record = json.loads(data)  # insid3-match's file: the same convention, stated
        assert record["coordinates"] == COORDINATES
        assert record["reference_size"] == record["target_size"] == [SCENE_SIZE[1], SCENE_SIZE[0]]  # [width, height]
        records.append(MatchRecord.from_json(record))
    name, data = downloaded(page, page.locator("#download-matches"))
    assert name == "matches.json"
    assert [MatchRecord.from_json(r).to_json() for r in json.loads(data)] == [r.to_json() for r in records]

    source = records[0].source_points
    height, width = scene.mask.shape
    np.testing.assert_allclose(source, [[0.2 * width, 0.3 * height], [0.5 * width, 0.5 * height],
                                        [0.8 * width, 0.7 * height]], atol=1.0)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for record, target in zip(records, files["targets"]):
            answer = http.post("/v1/match", data={"points": json.dumps(source.tolist())},
                               files={"image": ("t.png", target.read_bytes(), "image/png"),
                                      "reference_image": ("r.png", path.read_bytes(), "image/png")})
            assert answer.status_code == 200, answer.text
            assert record.reference == path.name and record.target == target.name
            assert list(record.target_size) == answer.json()["size"]
            np.testing.assert_allclose(record.target_points, answer.json()["points"], rtol=0, atol=1e-4)
            np.testing.assert_allclose(record.peak_similarity, answer.json()["peak_similarity"], atol=1e-6)
