"""Calibration profiles per reference on a real insid3-serve (loopback, httpx): a reference
registered with a profile gives the masks of `insid3 segment --profile` with that profile, its
min_score empties the concepts judged absent, references without one keep the server's settings,
and a profile made for another bundle is refused in one line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from support.export_fixtures import make_tiny_bundle

from insid3.engine import Segmenter
from insid3.engine.cli import segment as segment_cli
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.serve.launch import running_server
from insid3.format.bundle import load_bundle
from insid3.format.profile import BundleIdentity, Profile, ScoreThreshold
from insid3.format.settings import Hyperparameters

SIZE = (96, 128)
SETTINGS = Hyperparameters(svd_components=8, tau=0.9, merge_threshold=0.45)  # far from the bundle's defaults


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def profile_of(bundle: Path, min_score: float | None = None) -> Profile:
    threshold = None if min_score is None else ScoreThreshold(min_score, "quality.score", 0.0, 0.0)
    return Profile(hyperparameters=SETTINGS, bundle=BundleIdentity.of(load_bundle(bundle)), min_score=threshold,
                   calibration={"source": "hand-made for a test"})


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """One labelled example and five targets (four show its concept, one another) as files."""
    root = tmp_path_factory.mktemp("profile-serve")
    (root / "targets").mkdir()
    example = draw_scene(20, SIZE, concept=0)
    Image.fromarray(example.image).save(root / "ref.png")
    Image.fromarray(example.mask.astype(np.uint8) * 255).save(root / "ref.mask.png")
    for i, concept in enumerate((0, 0, 0, 0, 1)):
        Image.fromarray(draw_scene(40 + i, SIZE, concept=concept).image).save(root / "targets" / f"t{i}.png")
    return root


@pytest.fixture(scope="module")
def client(tiny_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-profiles") / "server.log"
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--max-batch", "8", "--max-wait-ms", "50"]
    with running_server(args, log) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def register(http: httpx.Client, scenes: Path, profile: Profile | str | None = None, as_file: bool = False):
    files = [("image", ("ref.png", (scenes / "ref.png").read_bytes(), "image/png")),
             ("mask", ("mask.png", (scenes / "ref.mask.png").read_bytes(), "image/png"))]
    text = json.dumps(profile.to_json()) if isinstance(profile, Profile) else profile
    if text is not None and as_file:
        files.append(("profile", ("profile.json", text.encode(), "application/json")))
    data = {"profile": text} if text is not None and not as_file else {}
    return http.post("/v1/references", files=files, data=data)


def served_masks(http: httpx.Client, scenes: Path, reference_id: str) -> dict[str, tuple[np.ndarray, dict]]:
    masks = {}
    for target in sorted((scenes / "targets").glob("t*.png")):
        response = http.post("/v1/segment", data={"reference_id": reference_id},
                             files={"image": (target.name, target.read_bytes())})
        assert response.status_code == 200, response.text
        masks[target.name] = (np.asarray(Image.open(io.BytesIO(response.content))),
                              json.loads(response.headers["X-Insid3-Quality"]))
    return masks


def cli_masks(bundle: Path, scenes: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    argv = ["--bundle", str(bundle), "--ref", str(scenes / "ref.png"), "--ref-mask", str(scenes / "ref.mask.png"),
            "--backend", "onnxruntime", "--no-progress", "--out", str(out), *extra, str(scenes / "targets")]
    assert segment_cli.main(argv) == 0
    return {path.name: np.asarray(Image.open(path)) for path in sorted(out.glob("t*.png"))}


def test_a_profiled_reference_gives_the_masks_of_segment_with_that_profile(client, tiny_bundle, scenes, tmp_path):
    profile = profile_of(tiny_bundle)
    registered = register(client, scenes, profile, as_file=True)
    assert registered.status_code == 201, registered.text
    assert registered.json()["profile"]["hyperparameters"] == SETTINGS.to_json()
    served = served_masks(client, scenes, registered.json()["reference_id"])
    expected = cli_masks(tiny_bundle, scenes, tmp_path / "cli", "--profile", str(profile.write(tmp_path / "p.json")))
    assert sorted(served) == sorted(expected) and len(expected) == 5
    for name, (mask, quality) in served.items():
        np.testing.assert_array_equal(mask, expected[name])
        assert "absent" not in quality  # no threshold in this profile: the record is the plain one
    # The server's own settings (no profile) give other masks: the profile did apply.
    plain = register(client, scenes)
    assert plain.status_code == 201 and "profile" not in plain.json()
    defaults = served_masks(client, scenes, plain.json()["reference_id"])
    assert any(not np.array_equal(defaults[name][0], mask) for name, (mask, _) in served.items())
    engine = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    reference = engine.encode_reference([(Image.open(scenes / "ref.png"), Image.open(scenes / "ref.mask.png"))])
    for name, (mask, _) in defaults.items():
        expected_default = engine.segment(Image.open(scenes / "targets" / name), reference)
        np.testing.assert_array_equal(mask > 0, expected_default)


def test_the_profiles_min_score_empties_exactly_what_segment_empties(client, tiny_bundle, scenes, tmp_path):
    # A threshold between the targets' scores under the profile, so some are emptied and some not.
    scored = served_masks(client, scenes, register(client, scenes, profile_of(tiny_bundle)).json()["reference_id"])
    scores = sorted(quality["score"] for _, quality in scored.values())
    threshold = (scores[1] + scores[2]) / 2
    profile = profile_of(tiny_bundle, min_score=threshold)
    registered = register(client, scenes, json.dumps(profile.to_json()))  # as a form field this time
    assert registered.status_code == 201 and registered.json()["profile"]["min_score"] == threshold
    served = served_masks(client, scenes, registered.json()["reference_id"])
    expected = cli_masks(tiny_bundle, scenes, tmp_path / "cli", "--profile", str(profile.write(tmp_path / "p.json")))
    absent = {name for name, (_, quality) in served.items() if quality["absent"]}
    assert absent == {name for name, (_, quality) in scored.items() if quality["score"] < threshold}
    assert len(absent) == 2
    for name, (mask, quality) in served.items():
        np.testing.assert_array_equal(mask, expected[name])
        assert quality["min_score"] == threshold and quality["score"] == scored[name][1]["score"]
        assert (not mask.any()) if name in absent else mask.any()


def test_concepts_of_one_profile_equal_the_engine_with_its_settings(client, tiny_bundle, scenes):
    threshold = 0.5
    profile = profile_of(tiny_bundle, min_score=threshold)
    ids = [register(client, scenes, profile).json()["reference_id"] for _ in range(2)]
    engine = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", **SETTINGS.to_json())
    reference = engine.encode_reference([(Image.open(scenes / "ref.png"), Image.open(scenes / "ref.mask.png"))])
    target = scenes / "targets" / "t0.png"
    response = client.post("/v1/segment", data={"reference_id": ids, "name": ["a", "b"], "format": "label-png"},
                           files={"image": (target.name, target.read_bytes())})
    assert response.status_code == 200, response.text
    expected = engine.segment_concepts(Image.open(target), {"a": reference, "b": reference})
    expected = expected.above(threshold)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), expected.label_map())
    quality = json.loads(response.headers["X-Insid3-Quality"])
    assert {name: record["absent"] for name, record in quality.items()} == {
        name: expected[name].quality.score < threshold for name in ("a", "b")}


def test_concepts_of_different_settings_are_refused_naming_each(client, tiny_bundle, scenes):
    profiled = register(client, scenes, profile_of(tiny_bundle)).json()["reference_id"]
    plain = register(client, scenes).json()["reference_id"]
    target = scenes / "targets" / "t0.png"
    response = client.post("/v1/segment", data={"reference_id": [profiled, plain], "format": "coco"},
                           files={"image": (target.name, target.read_bytes())})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert profiled in detail and plain in detail and "svd_components=8" in detail


def test_a_profile_for_another_bundle_is_refused_in_one_line(client, scenes, tmp_path):
    other = make_tiny_bundle(tmp_path, resolution=224, seed=1)
    response = register(client, scenes, profile_of(other))
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "calibrated for another bundle" in detail and "\n" not in detail
    assert str(tmp_path) not in detail  # the server's folders are not the client's business


@pytest.mark.parametrize("text, says", [("not json", "not JSON"), ("{}", "not an insid3 profile"),
                                         ('{"kind": "insid3-profile", "version": 9}', "version 9")])
def test_a_profile_that_is_no_profile_is_400_saying_why(client, scenes, text, says):
    response = register(client, scenes, text)
    assert response.status_code == 400 and says in response.json()["detail"]


def test_a_server_wide_profile_applies_its_min_score_to_references_without_one(tiny_bundle, scenes, tmp_path, client):
    scored = served_masks(client, scenes, register(client, scenes, profile_of(tiny_bundle)).json()["reference_id"])
    scores = sorted(quality["score"] for _, quality in scored.values())
    profile = profile_of(tiny_bundle, min_score=(scores[2] + scores[3]) / 2).write(tmp_path / "p.json")
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--profile", str(profile)]
    with running_server(args, tmp_path / "server.log") as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        served = served_masks(http, scenes, register(http, scenes).json()["reference_id"])
        # A reference's own profile wins over the server's: this one has no threshold.
        own = served_masks(http, scenes, register(http, scenes, profile_of(tiny_bundle)).json()["reference_id"])
    expected = cli_masks(tiny_bundle, scenes, tmp_path / "cli", "--profile", str(profile))
    assert sum(quality["absent"] for _, quality in served.values()) == 3
    for name, (mask, _) in served.items():
        np.testing.assert_array_equal(mask, expected[name])
        np.testing.assert_array_equal(own[name][0], scored[name][0])
        assert "absent" not in own[name][1]


def test_min_score_out_of_range_is_refused(tiny_bundle):
    from insid3.engine.serve.settings import ServeSettings
    from insid3.errors import SettingsError

    assert ServeSettings.from_json({"min_score": "0.5"}).min_score == 0.5
    assert ServeSettings.from_json({"min_score": "None"}).min_score is None
    with pytest.raises(SettingsError, match="min_score=1.5"):
        ServeSettings(min_score=1.5).validated()


def test_the_runner_keeps_one_engine_per_distinct_settings_and_rebuilds_evicted_ones(segmenter, scenes):
    from insid3.engine.serve.profiles import EngineSettings
    from insid3.engine.serve.runner import PROFILE_ENGINES, EngineRunner

    runner = EngineRunner(segmenter)
    try:
        assert runner.engine(None) is segmenter and runner.engine(runner.settings) is segmenter
        first = EngineSettings(SETTINGS, segmenter.refine)
        engine = runner.engine(first)
        assert engine is not segmenter and engine.hyperparameters == SETTINGS and runner.engine(first) is engine
        assert engine.backend is segmenter.backend  # the same backbone: one batch serves every profile
        shot = [(Image.open(scenes / "ref.png"), Image.open(scenes / "ref.mask.png"))]
        target = Image.open(scenes / "targets" / "t0.png")
        reference = engine.encode_reference(shot)  # a registered reference outlives the engine that encoded it
        before = engine.segment(target, reference)
        for tau in np.linspace(0.3, 0.8, PROFILE_ENGINES):  # as many other settings as are kept
            runner.engine(EngineSettings(Hyperparameters(8, float(tau), 0.45), segmenter.refine))
        rebuilt = runner.engine(first)
        assert rebuilt is not engine  # evicted, then built again on demand...
        np.testing.assert_array_equal(rebuilt.segment(target, reference), before)  # ...and serves it alike
    finally:
        runner.close()
