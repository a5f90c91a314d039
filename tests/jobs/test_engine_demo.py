"""insid3-demo: the main job's path on a bundle, its outputs, and its honesty about random weights."""

import numpy as np
from PIL import Image

from insid3.engine.cli.demo import main


def test_demo_writes_every_pair_and_says_the_weights_are_random(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--bundle", str(tiny_bundle), "--pairs", "2", "--backend", "onnxruntime", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for index in range(2):
        target = np.asarray(Image.open(out / f"pair{index}_target.png"))
        mask = np.asarray(Image.open(out / f"pair{index}_mask.png"))
        assert mask.shape == target.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert (out / f"pair{index}_overlay.png").is_file() and (out / f"pair{index}_reference_mask.png").is_file()
        assert f"pair {index}: IoU vs drawn truth" in printed
    assert "RANDOM weights" in printed and "not segmentation quality" in printed


def test_demo_with_a_missing_bundle_is_one_line(tmp_path, capsys):
    assert main(["--bundle", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"insid3-demo: error: bundle folder {tmp_path / 'none'} does not exist"


def test_zero_pairs_or_a_file_as_out_is_a_usage_error(tiny_bundle, tmp_path, capsys):

    a_file = tmp_path / "file"
    a_file.write_text("x")
    for argv, says in ((["--pairs", "0"], "--pairs: 0 must be at least 1"),
                       (["--out", str(a_file)], f"--out {a_file} exists and is not a folder")):
        exit_info_code = main(["--bundle", str(tiny_bundle), "--backend", "onnxruntime", *argv])
        err = capsys.readouterr().err
        assert exit_info_code == 2 and says in err and "nan" not in err.lower()


def test_the_demo_export_reports_each_step(tmp_path, capsys, monkeypatch):
    """The first run exports a bundle for a minute: it says what it is doing meanwhile."""
    from insid3.engine.cli import demo

    seen = {}

    def fake_export(settings, *, report=None):
        seen["settings"] = settings
        report("[1/2] build the model ...")
        report("[1/2] build the model: done in 0.1 s")
        raise KeyboardInterrupt  # the user gives up waiting

    monkeypatch.setattr("insid3.export.export_bundle", fake_export)
    monkeypatch.setattr(demo, "default_bundle", lambda size, res: tmp_path / "bundle")
    assert main(["--out", str(tmp_path / "o"), "--res", "224"]) == 130
    captured = capsys.readouterr()
    assert "insid3-demo: export [1/2] build the model: done in 0.1 s" in captured.out
    assert captured.err.strip() == "insid3-demo: interrupted"
    assert seen["settings"].random_init and seen["settings"].resolution == 224
