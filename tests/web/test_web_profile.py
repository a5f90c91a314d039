"""The web page loads a calibration profile (insid3 calibrate, docs/calibration.md): it shows the
profile's settings and the bundle it was made for, registers its references with it (the masks
are the API's for the same profile), shows its min_score beside each score and flags the masks
judged absent; a profile for another bundle is refused in plain words. A real headless browser
against a real insid3-serve on loopback."""

import io
import json

import numpy as np
import pytest
from PIL import Image
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
from insid3.format.bundle import load_bundle
from insid3.format.profile import BundleIdentity, Profile, ScoreThreshold
from insid3.format.settings import Hyperparameters

if SKIP_HERE:
    pytest.skip(MISSING, allow_module_level=True)
pytest_plugins = ["support.web_fixtures"]  # browser, server, page, artifacts

SETTINGS = Hyperparameters(svd_components=8, tau=0.9, merge_threshold=0.45)
SCENES = ((20, 0), (21, 0), (22, 1), (23, 0), (29, 1))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-profile")
    shot = draw_scene(10, SCENE_SIZE, concept=0)
    targets = [png_file(folder, f"t{seed}-{concept}.png", draw_scene(seed, SCENE_SIZE, concept=concept).image)
               for seed, concept in SCENES]
    return {"folder": folder, "shot": (png_file(folder, "ref.png", shot.image), shot), "targets": targets}


def profile_json(bundle, min_score: float | None = None) -> dict:
    threshold = None if min_score is None else ScoreThreshold(min_score, "quality.score", 0.0, 0.0)
    return Profile(hyperparameters=SETTINGS, bundle=BundleIdentity.of(load_bundle(bundle)), min_score=threshold,
                   calibration={"source": "hand-made for a browser test"}).to_json()


def test_a_loaded_profile_segments_with_its_settings_and_flags_absent_masks(page, server, files, tiny_bundle,
                                                                             artifacts):
    path, scene = files["shot"]
    page.set_input_files("#reference-file", str(path))
    wait_for_shots(page, 1)
    paint_over(page, scene.mask)
    _, mask_png = downloaded(page, page.locator("#download-reference-mask"))
    shot = (path.read_bytes(), mask_png)

    # A threshold between the targets' scores under the profile's settings: some masks are judged absent.
    scores = sorted(record["score"] for _, record in api_answers(server, shot, files["targets"],
                                                                  profile_json(tiny_bundle)).values())
    threshold = round((scores[1] + scores[2]) / 2, 6)
    profile = profile_json(tiny_bundle, threshold)
    profile_path = files["folder"] / "profile.json"
    profile_path.write_text(json.dumps(profile))
    expected = api_answers(server, shot, files["targets"], profile)
    absent = sorted(name for name, (_, record) in expected.items() if record["absent"])
    assert len(absent) == 2

    assert page.locator("#profile-none").is_visible()
    page.set_input_files("#profile-file", str(profile_path))
    summary = page.locator("#profile-summary")
    summary.wait_for()
    text = summary.inner_text()
    assert "profile.json" in text and "svd_components 8" in text and "tau 0.9" in text
    assert "merge_threshold 0.45" in text and f"min_score {threshold:g}" in text
    bundle = profile["bundle"]
    assert bundle["model_sha256"][:12] in text and bundle["basis_sha256"][:12] in text and "224 px" in text

    page.set_input_files("#target-files", [str(p) for p in files["targets"]])
    page.click("#run")
    page.locator('.target[data-state="done"]').nth(len(files["targets"]) - 1).wait_for(timeout=60_000)
    for name, (mask, record) in expected.items():
        card = page.locator(".target", has=page.locator(".name", has_text=name))
        _, mask_png = downloaded(page, card.locator(".download"))
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(mask_png))) > 0, mask)
        flags = card.get_attribute("data-flags").split()
        assert ("absent" in flags) == (name in absent)
        assert f"{record['score']:.2f} {'<' if name in absent else '≥'} {threshold:.2f}" in card.locator(
            ".quality").inner_text()
        assert ("Judged absent" in card.locator(".status").inner_text()) == (name in absent)
    page.select_option("#filter-targets", "absent")
    shown = page.eval_on_selector_all(".target:not([hidden]) .name", "names => names.map(n => n.textContent)")
    assert sorted(shown) == absent
    page.screenshot(path=str(artifacts / "web-profile.png"))

    # Without the profile the results are stale, and a new run gives the server's own settings.
    page.select_option("#filter-targets", "all")
    page.click("#clear-profile")
    assert page.locator("#profile-none").is_visible() and not summary.is_visible()
    page.click("#run")
    plain = api_answers(server, shot, files["targets"][:1], None)
    card = page.locator(".target", has=page.locator(".name", has_text=files["targets"][0].name))
    page.wait_for_function("card => card.dataset.state === 'done' && !card.dataset.flags.includes('absent')"
                           " && !card.querySelector('.quality').textContent.includes('≥')",
                           arg=card.element_handle(), timeout=60_000)
    _, mask_png = downloaded(page, card.locator(".download"))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(mask_png))) > 0,
                                  plain[files["targets"][0].name][0])


def test_a_profile_for_another_bundle_or_no_profile_is_refused_in_plain_words(page, files, tiny_bundle):
    folder = files["folder"]
    foreign = profile_json(tiny_bundle)
    foreign["bundle"]["model_sha256"] = "0" * 64
    (folder / "foreign.json").write_text(json.dumps(foreign))
    (folder / "notes.json").write_text(json.dumps({"hello": 1}))

    page.set_input_files("#profile-file", str(folder / "notes.json"))
    error = page.locator("#reference-error")
    error.wait_for()
    assert "notes.json is not an insid3 profile" in error.inner_text()
    assert page.locator("#profile-none").is_visible()

    path, scene = files["shot"]
    page.set_input_files("#reference-file", str(path))
    wait_for_shots(page, 1)
    paint_over(page, scene.mask)
    page.set_input_files("#profile-file", str(folder / "foreign.json"))
    page.locator("#profile-summary").wait_for()
    page.set_input_files("#target-files", [str(files["targets"][0])])
    page.click("#run")
    page.wait_for_function("() => /another bundle/.test(document.querySelector('#reference-error').textContent)"
                           " && !document.querySelector('#reference-error').hidden", timeout=60_000)
    assert "calibrated for another bundle" in error.inner_text()  # the server's own line, as the detail
