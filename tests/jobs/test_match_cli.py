"""insid3-match end to end on the tiny bundle: outputs read back, resume, refusal, errors, Ctrl-C."""

import json

import numpy as np
import pytest
from PIL import Image
from support.commands import last_line

from insid3.engine import Segmenter
from insid3.engine.cli.match import main
from insid3.engine.jobs.match_outputs import MatchOutputs, read_csv, read_record
from insid3.engine.jobs.scenes import scene_pairs

POINTS = "5,20; 7,50; 95,63; 40.5,31.25"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("match-inputs")
    (reference, first), (_, second) = scene_pairs(2, size=(64, 96), seed=3)
    Image.fromarray(reference.image).save(folder / "ref.png")
    targets = folder / "targets"
    targets.mkdir()
    Image.fromarray(first.image).save(targets / "a.png")
    Image.fromarray(second.image[:50]).save(targets / "b.png")  # 96 x 50
    return folder


def run(tiny_bundle, files, out, *extra, points=("--points", POINTS)):
    return main(["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--ref", str(files / "ref.png"),
                 *points, "--out", str(out), *extra, str(files / "targets")])


def test_json_csv_and_picture_per_target_equal_the_engine(tiny_bundle, files, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(tiny_bundle, files, out, "--csv", "--visualize", "--svd-components", "20") == 0
    assert last_line(capsys).startswith("insid3-match: 2 matched, 0 already done, 0 failed")
    segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    points = [(5, 20), (7, 50), (95, 63), (40.5, 31.25)]
    for stem, size in (("a", (64, 96)), ("b", (50, 96))):
        record = read_record(out / f"{stem}.json")
        expected = segmenter.match(files / "ref.png", points, files / "targets" / f"{stem}.png", svd_components=20)
        np.testing.assert_allclose(record.target_points, expected, atol=1e-4)
        assert record.target_size == size and record.reference_size == (64, 96)
        assert record.debiased and record.svd_components == 20
        np.testing.assert_array_equal(record.source_points, np.asarray(points, np.float32))
        table = read_csv(out / f"{stem}.csv")
        np.testing.assert_allclose(table[:, 2:4], record.target_points, atol=1e-4)
        np.testing.assert_allclose(table[:, 4], record.peak_similarity, atol=1e-6)
        with Image.open(out / f"{stem}.match.jpg") as picture:
            assert picture.format == "JPEG" and picture.height == 64
            assert picture.width == 96 + round(96 * 64 / size[0])


def test_original_features_and_a_points_file(tiny_bundle, files, tmp_path):
    points_file = tmp_path / "points.json"
    points_file.write_text(json.dumps({"points": [[5, 20], [7, 50]]}))
    out = tmp_path / "out"
    assert run(tiny_bundle, files, out, "--original", points=("--points-file", str(points_file))) == 0
    record = read_record(out / "a.json")
    assert not record.debiased and record.svd_components is None and len(record.target_points) == 2
    segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    expected = segmenter.match(files / "ref.png", [(5, 20), (7, 50)], files / "targets" / "a.png", debiased=False)
    np.testing.assert_allclose(record.target_points, expected, atol=1e-4)


def test_a_rerun_resumes_and_other_points_are_refused(tiny_bundle, files, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(tiny_bundle, files, out) == 0
    assert run(tiny_bundle, files, out) == 0
    assert last_line(capsys).startswith("insid3-match: 0 matched, 2 already done")
    assert run(tiny_bundle, files, out, points=("--points", "1,1")) == 2
    assert "the reference image or its points changed" in last_line(capsys)
    assert run(tiny_bundle, files, out, "--original") == 2
    assert "the matching options changed" in last_line(capsys)
    assert run(tiny_bundle, files, out, "--overwrite", points=("--points", "1,1")) == 0
    assert len(read_record(out / "a.json").target_points) == 1


def test_ctrl_c_keeps_finished_targets_and_exits_130(tiny_bundle, files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    write, calls = MatchOutputs.write, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        write(self, *args, **kwargs)

    monkeypatch.setattr(MatchOutputs, "write", interrupted)
    assert run(tiny_bundle, files, out, "--batch-size", "1") == 130
    assert "interrupted: 1 matched" in last_line(capsys)
    assert (out / "a.json").is_file() and not (out / "b.json").exists()
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(MatchOutputs, "write", write)
    assert run(tiny_bundle, files, out) == 0
    assert last_line(capsys).startswith("insid3-match: 1 matched, 1 already done")


def test_an_unreadable_target_is_skipped_and_reported(tiny_bundle, files, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "out"
    code = main(["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--ref", str(files / "ref.png"),
                 "--points", POINTS, "--out", str(out), str(broken), str(files / "targets" / "a.png")])
    assert code == 1 and (out / "a.json").is_file()
    err = capsys.readouterr().err
    assert f"skipped {broken}" in err and "1 matched, 0 already done, 1 failed" in err


@pytest.mark.parametrize("points, message", [
    ("5,20;200,3", "error: point 1 (200, 3) lies outside --ref"),
    ("5,20;nan,3", "error: point 1 (nan, 3) is not a finite number"),
    ("5,20;7", "error: --points: point 1 '7' is not an 'x,y' pair"),
    ("", "error: no points given"),
])
def test_bad_points_are_one_line_and_exit_2(tiny_bundle, files, tmp_path, capsys, points, message):
    assert run(tiny_bundle, files, tmp_path / "out", points=("--points", points)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_bad_options_fail_before_the_model_loads(tiny_bundle, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Segmenter, "from_bundle", lambda *a, **k: pytest.fail("the model loaded"))
    assert run(tiny_bundle, files, tmp_path / "out", "--svd-components", "128") == 2
    assert "svd_components=128 must be in [0, 128)" in last_line(capsys)
    assert run(tiny_bundle, files, tmp_path / "out", points=("--points-file", str(tmp_path / "none.txt"))) == 2
    line = last_line(capsys)
    assert "--points-file" in line and "does not exist" in line
    assert run(tiny_bundle, files, tmp_path / "out", points=("--points-file", str(tmp_path))) == 2
    assert last_line(capsys).endswith(f"--points-file {tmp_path} is a folder: give a file of points")
    clash = tmp_path / "insid3-job.png"
    Image.open(files / "ref.png").save(clash)
    assert main(["--bundle", str(tiny_bundle), "--ref", str(files / "ref.png"), "--points", POINTS,
                 "--out", str(tmp_path / "out"), str(clash)]) == 2
    assert "its matches would be written over insid3-job.json: rename it" in last_line(capsys)


def test_a_rerun_that_adds_visualize_draws_the_targets_done_without_it(tiny_bundle, files, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(tiny_bundle, files, out) == 0 and not list(out.glob("*.match.jpg"))
    assert run(tiny_bundle, files, out, "--visualize") == 0
    assert last_line(capsys).startswith("insid3-match: 2 matched, 0 already done")
    assert sorted(p.name for p in out.glob("*.match.jpg")) == ["a.match.jpg", "b.match.jpg"]


def test_help_shows_the_defaults(capsys):
    exit__code = main(["--help"])
    assert exit__code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "targets per backbone call (default: 8)" in text and "(default: auto)" in text
    # --svd-components' None is "the bundle's", said in its group's title, never "(default: None)" (issue 21.6)
    assert "removed (the default)" in text and "(default: the bundle's" in text and "(default: None)" not in text
