"""The web page shows each target's quality (score and flags, as the API answers them: docs/quality.md),
sorts the targets by it (flagged first, lowest or highest score first) and filters them (flagged only,
not flagged, one flag), in a real headless browser against a real insid3-serve on loopback."""

import json

import httpx
import numpy as np
import pytest
from support.web_browser import (
    MISSING,
    SCENE_SIZE,
    SKIP_HERE,
    api_answers,
    downloaded,
    paint_over,
    png_file,
    wait_for_shots,
)

from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.quality import FLAGS

if SKIP_HERE:
    pytest.skip(MISSING, allow_module_level=True)
pytest_plugins = ["support.web_fixtures"]  # browser, server, page, artifacts

# (seed, concept) scenes, and a flat grey image, whose mask is empty: at least one target is flagged.
SCENES = ((20, 0), (21, 0), (22, 1), (29, 1))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-quality")
    shot = draw_scene(10, SCENE_SIZE, concept=0)
    targets = [png_file(folder, f"t{seed}-{concept}.png", draw_scene(seed, SCENE_SIZE, concept=concept).image)
               for seed, concept in SCENES]
    targets.append(png_file(folder, "grey.png", np.full((*SCENE_SIZE, 3), 128, np.uint8)))
    return {"shot": (png_file(folder, "ref.png", shot.image), shot), "targets": targets}


def shown(page) -> list[str]:
    """The names of the visible target cards, top to bottom."""
    return page.eval_on_selector_all(".target:not([hidden]) .name", "names => names.map(n => n.textContent)")


def test_scores_and_flags_are_shown_sorted_and_filtered(page, server, files, artifacts):
    path, scene = files["shot"]
    page.set_input_files("#reference-file", str(path))
    wait_for_shots(page, 1)
    paint_over(page, scene.mask)
    _, mask_png = downloaded(page, page.locator("#download-reference-mask"))
    page.set_input_files("#target-files", [str(p) for p in files["targets"]])
    page.click("#run")
    page.locator('.target[data-state="done"]').nth(len(files["targets"]) - 1).wait_for(timeout=60_000)

    expected = {name: record for name, (_, record) in
                api_answers(server, (path.read_bytes(), mask_png), files["targets"]).items()}
    flagged = [name for name, record in expected.items() if record["flags"]]
    calm = [name for name, record in expected.items() if not record["flags"]]
    assert flagged and calm, f"the scenes should give flagged and unflagged targets: {expected}"
    added = [p.name for p in files["targets"]]
    assert shown(page) == added
    for name, record in expected.items():
        card = page.locator(".target", has=page.locator(".name", has_text=name))
        assert float(card.get_attribute("data-score")) == record["score"]
        assert card.get_attribute("data-flags").split() == record["flags"]
        text = card.locator(".quality").inner_text()
        assert f"score {record['score']:.2f}" in text and all(flag in text for flag in record["flags"])
    assert page.locator("#quality-summary").inner_text() == f"{len(flagged)} flagged"

    page.select_option("#sort-targets", "flagged-first")
    order = shown(page)
    assert set(order[: len(flagged)]) == set(flagged)
    assert order[: len(flagged)] == sorted(flagged, key=lambda n: (expected[n]["score"], added.index(n)))
    page.select_option("#sort-targets", "score-ascending")
    assert shown(page) == sorted(added, key=lambda n: (expected[n]["score"], added.index(n)))
    page.select_option("#sort-targets", "score-descending")
    assert shown(page) == sorted(added, key=lambda n: (-expected[n]["score"], added.index(n)))

    page.select_option("#filter-targets", "flagged")
    assert sorted(shown(page)) == sorted(flagged)
    assert page.locator("#quality-summary").inner_text() == f"{len(flagged)} flagged · {len(calm)} hidden"
    page.select_option("#filter-targets", "unflagged")
    assert sorted(shown(page)) == sorted(calm)
    page.select_option("#filter-targets", "empty")
    assert sorted(shown(page)) == sorted(n for n, r in expected.items() if "empty" in r["flags"]) == ["grey.png"]
    page.screenshot(path=str(artifacts / "web-quality.png"))
    page.select_option("#filter-targets", "all")
    page.select_option("#sort-targets", "added")
    assert shown(page) == added

    # The page's COCO file carries each mask's score (COCO's results convention).
    _, coco_bytes = downloaded(page, page.locator("#download-coco"))
    coco = json.loads(coco_bytes)
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    assert coco["annotations"] and all(a["score"] == expected[names[a["image_id"]]]["score"]
                                       for a in coco["annotations"])
    # Match mode has no quality: every card shown, as added.
    page.select_option("#filter-targets", "flagged")
    page.check("input[name=mode][value=match]")
    assert shown(page) == added


def test_concepts_mode_shows_each_concepts_score_and_the_targets_lowest(page, server, files):
    path, scene = files["shot"]
    page.check("input[name=mode][value=concepts]")
    page.set_input_files("#reference-file", str(path))
    wait_for_shots(page, 1)
    painted = []
    names = ("ellipse", "grass")
    grass = np.zeros_like(scene.mask)
    grass[-60:, :100] = True  # a corner of the background: a second concept of the same scene
    for index, (name, mask) in enumerate(zip(names, (scene.mask, grass))):
        if index:
            page.click("#add-concept")
            page.wait_for_selector(f"#concept-list .concept:nth-child({index + 1}).selected")
        page.locator("#concept-list .concept").nth(index).locator(".concept-name").fill(name)
        paint_over(page, mask, strokes=2)
        painted.append(downloaded(page, page.locator("#download-reference-mask"))[1])
    targets = files["targets"][:2] + files["targets"][-1:]
    page.set_input_files("#target-files", [str(p) for p in targets])
    page.click("#run")
    page.locator('.target[data-state="done"]').nth(len(targets) - 1).wait_for(timeout=60_000)

    with httpx.Client(base_url=server.url, timeout=60) as http:
        ids = []
        for mask in painted:
            registered = http.post("/v1/references", files=[("image", ("s.png", path.read_bytes(), "image/png")),
                                                            ("mask", ("m.png", mask, "image/png"))])
            ids.append(registered.json()["reference_id"])
        expected = {}
        for target in targets:
            answer = http.post("/v1/segment", data={"reference_id": ids, "name": list(names), "format": "label-png"},
                               files={"image": (target.name, target.read_bytes(), "image/png")})
            expected[target.name] = json.loads(answer.headers["X-Insid3-Quality"])
    for name, records in expected.items():
        card = page.locator(".target", has=page.locator(".name", has_text=name))
        text = card.locator(".quality").inner_text()
        for concept, record in records.items():
            assert f"{concept} {record['score']:.2f}" in text
        assert float(card.get_attribute("data-score")) == min(r["score"] for r in records.values())
        union = [flag for flag in FLAGS if any(flag in r["flags"] for r in records.values())]
        assert card.get_attribute("data-flags").split() == union
    page.select_option("#sort-targets", "score-ascending")
    lowest = {name: min(r["score"] for r in records.values()) for name, records in expected.items()}
    added = [p.name for p in targets]
    assert shown(page) == sorted(added, key=lambda n: (lowest[n], added.index(n)))
