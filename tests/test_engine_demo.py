"""insid3-demo: the main job's path on a bundle, its outputs, and its honesty about random weights."""

import numpy as np
from PIL import Image

from insid3.engine.demo import main


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
