"""insid3-eval's measurement tools: the side-by-side speed run against the authors' way and the
basis sensitivity comparison, on the tiny bundle."""

from __future__ import annotations

import json
import shutil

import pytest
from support.commands import verb

from insid3.evaluation import speed

speed_main, sensitivity_main = verb("eval", "speed"), verb("eval", "sensitivity")


def test_speed_runs_both_sides_on_the_same_episodes(tiny_bundle, tmp_path, capsys):
    speed.write_synthetic_coco(tmp_path / "data", images_per_class=2, size=(60, 80))
    out = tmp_path / "speed.json"
    assert speed_main(["--bundle", str(tiny_bundle), "--data-root", str(tmp_path / "data"), "--episodes", "3",
                       "--passes", "1", "--backend", "onnxruntime", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["counts_identical"] and figures["miou_ours"] == figures["miou_authors"]
    assert figures["ratio"] > 0 and figures["images_needed"] == 6 and figures["images_encoded_by_ours"] <= 6
    assert "pass 1:" in capsys.readouterr().err


def test_sensitivity_of_a_bundle_against_itself_is_nil_and_other_weights_are_refused(tiny_bundle, tmp_path, capsys):
    speed.write_synthetic_coco(tmp_path / "data", images_per_class=2, size=(60, 80))
    argv = ["--bundle", str(tiny_bundle), "--data-root", str(tmp_path / "data"), "--episodes", "2",
            "--backend", "onnxruntime", "--json", str(tmp_path / "s.json")]
    assert sensitivity_main([*argv, "--other", str(tiny_bundle)]) == 0
    figures = json.loads((tmp_path / "s.json").read_text())
    assert figures["subspace_overlap"] == pytest.approx(1.0) and figures["mask_iou_min"] == 1.0 and figures["episodes_identical"] == 2 and figures["miou_difference"] == 0
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    metadata = json.loads((other / "insid3.json").read_text())
    metadata["weights"]["seed"] = 99
    (other / "insid3.json").write_text(json.dumps(metadata))
    assert sensitivity_main([*argv, "--other", str(other)]) == 2
    assert "must share their weights" in capsys.readouterr().err
