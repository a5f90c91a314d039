"""A calibration profile in use: `insid3 segment --profile` gives the masks of passing its settings
explicitly, its score threshold becomes --min-score (recorded in the job manifest), `insid3 serve
--profile` takes its settings, and a profile made for another bundle is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.export_fixtures import make_tiny_bundle

from insid3.engine.cli import segment as segment_cli
from insid3.engine.cli.arguments import new_parser
from insid3.engine.jobs.scenes import draw_scene
from insid3.evaluation.calibration.examples import ExampleSource
from insid3.evaluation.calibration.run import calibrate
from insid3.evaluation.calibration.settings import CalibrationSettings
from insid3.format.bundle import load_bundle
from insid3.format.profile import BundleIdentity, Profile, ProfileError, ScoreThreshold, read_profile
from insid3.format.settings import Hyperparameters
from insid3.format.verify import sha256_of

SIZE = (96, 128)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three labelled scenes of one concept and three targets (two show it, one does not)."""
    root = tmp_path_factory.mktemp("profile-scenes")
    (root / "labelled").mkdir()
    (root / "targets").mkdir()
    for i in range(3):
        scene = draw_scene(20 + i, SIZE, concept=0)
        Image.fromarray(scene.image).save(root / "labelled" / f"s{i}.png")
        Image.fromarray(scene.mask.astype(np.uint8) * 255).save(root / "labelled" / f"s{i}.mask.png")
    for i, concept in enumerate((0, 0, 1)):
        Image.fromarray(draw_scene(40 + i, SIZE, concept=concept).image).save(root / "targets" / f"t{i}.png")
    return root


def hand_made(bundle: Path, path: Path, min_score: float | None = None) -> Path:
    """A profile far from the bundle's defaults, so its masks differ from theirs."""
    threshold = None if min_score is None else ScoreThreshold(min_score, "quality.score", 0.0, 0.0)
    profile = Profile(hyperparameters=Hyperparameters(svd_components=8, tau=0.9, merge_threshold=0.45),
                      bundle=BundleIdentity.of(load_bundle(bundle)), min_score=threshold,
                      calibration={"source": "hand-made for a test"})
    return profile.write(path)


def segment(bundle, scenes, out, *extra) -> dict[str, bytes]:
    argv = ["--bundle", str(bundle), "--ref", str(scenes / "labelled" / "s0.png"), "--ref-mask",
            str(scenes / "labelled" / "s0.mask.png"), "--backend", "onnxruntime", "--no-progress", "--out", str(out),
            *extra, str(scenes / "targets")]
    assert segment_cli.main(argv) == 0
    return {p.name: p.read_bytes() for p in sorted(Path(out).glob("t*.png"))}


def test_a_profile_reads_back_and_checks_its_bundle(tiny_bundle, tmp_path):
    path = hand_made(tiny_bundle, tmp_path / "p.json", min_score=0.25)
    profile = read_profile(path)
    assert profile.hyperparameters == Hyperparameters(8, 0.9, 0.45) and profile.min_score.threshold == 0.25
    assert Profile.from_json(json.loads(path.read_text())) == profile
    profile.require_bundle(load_bundle(tiny_bundle))
    other = make_tiny_bundle(tmp_path, resolution=224, seed=1)
    with pytest.raises(ProfileError, match="calibrated for another bundle"):
        profile.require_bundle(load_bundle(other))
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    with pytest.raises(ProfileError, match="not an insid3 profile"):
        read_profile(tmp_path / "bad.json")


def test_segment_with_a_profile_gives_the_masks_of_its_settings_given_explicitly(tiny_bundle, scenes, tmp_path):
    profile = hand_made(tiny_bundle, tmp_path / "p.json")
    with_profile = segment(tiny_bundle, scenes, tmp_path / "a", "--profile", str(profile))
    explicit = segment(tiny_bundle, scenes, tmp_path / "b", "--svd-components", "8", "--tau", "0.9",
                       "--merge-threshold", "0.45")
    defaults = segment(tiny_bundle, scenes, tmp_path / "c")
    assert len(with_profile) == 3 and with_profile == explicit
    assert with_profile != defaults  # the profile's settings are not the defaults
    manifest = json.loads((tmp_path / "a" / "insid3-job.json").read_text())
    assert manifest["hyperparameters"]["svd_components"] == 8 and manifest["hyperparameters"]["tau"] == 0.9
    assert manifest["profile"] == {"file": str(profile), "sha256": sha256_of(profile)}
    assert json.loads((tmp_path / "b" / "insid3-job.json").read_text())["profile"] is None
    # an explicit flag wins over the profile
    mixed = segment(tiny_bundle, scenes, tmp_path / "d", "--profile", str(profile), "--svd-components", "62",
                    "--tau", "0.6", "--merge-threshold", "0.2")
    assert mixed == defaults


def test_a_calibrated_profile_through_segment_equals_its_flags(tiny_bundle, scenes, tmp_path):
    result = calibrate(CalibrationSettings(
        bundle=Path(tiny_bundle), source=ExampleSource("folder", scenes / "labelled"), out=tmp_path / "calib",
        backend="onnxruntime", progress=False, heatmap=False, bootstrap=50, svd_components=(8, 62), tau=(0.6, 0.9),
        merge_threshold=(0.2, 0.45)))
    h = result.profile.hyperparameters
    with_profile = segment(tiny_bundle, scenes, tmp_path / "a", "--profile", str(result.paths["profile"]))
    explicit = segment(tiny_bundle, scenes, tmp_path / "b", "--svd-components", str(h.svd_components),
                       "--tau", str(h.tau), "--merge-threshold", str(h.merge_threshold))
    assert with_profile == explicit


def test_the_profiles_score_threshold_becomes_min_score(tiny_bundle, scenes, tmp_path):
    profile = hand_made(tiny_bundle, tmp_path / "p.json", min_score=0.99)
    with_profile = segment(tiny_bundle, scenes, tmp_path / "a", "--profile", str(profile))
    explicit = segment(tiny_bundle, scenes, tmp_path / "b", "--svd-components", "8", "--tau", "0.9",
                       "--merge-threshold", "0.45", "--min-score", "0.99")
    assert with_profile == explicit
    recorded = json.loads((tmp_path / "a" / "insid3-job.json").read_text())
    explicit_manifest = json.loads((tmp_path / "b" / "insid3-job.json").read_text())
    assert recorded["profile"]["sha256"] == sha256_of(profile) and explicit_manifest["profile"] is None
    recorded.pop("profile"), explicit_manifest.pop("profile")
    assert recorded == explicit_manifest  # what the profile applied is recorded as if given by flags


def test_a_profile_for_another_bundle_is_refused_in_one_line(tiny_bundle, scenes, tmp_path, capsys):
    other = make_tiny_bundle(tmp_path, resolution=224, seed=1)
    profile = hand_made(other, tmp_path / "p.json")
    argv = ["--bundle", str(tiny_bundle), "--ref", str(scenes / "labelled" / "s0.png"), "--ref-mask",
            str(scenes / "labelled" / "s0.mask.png"), "--profile", str(profile), "--out", str(tmp_path / "o"),
            str(scenes / "targets")]
    capsys.readouterr()
    assert segment_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "calibrated for another bundle" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "o").glob("*.png")) if (tmp_path / "o").exists() else True


def test_serve_takes_a_profiles_settings(tiny_bundle, tmp_path):
    from insid3.engine.cli import serve as serve_cli

    profile = hand_made(tiny_bundle, tmp_path / "p.json")
    parser = new_parser("insid3 serve", None)
    serve_cli.configure(parser)
    settings = serve_cli.settings_from(parser.parse_args(["--bundle", str(tiny_bundle), "--profile", str(profile)]))
    assert (settings.svd_components, settings.tau, settings.merge_threshold) == (8, 0.9, 0.45)
    explicit = serve_cli.settings_from(parser.parse_args(["--bundle", str(tiny_bundle), "--profile", str(profile),
                                                          "--tau", "0.5"]))
    assert explicit.tau == 0.5 and explicit.svd_components == 8
