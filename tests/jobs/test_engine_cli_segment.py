"""insid3-segment on folders, globs, a corrupt file, resuming, COCO RLE, and bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.scenes import save_example

from insid3.engine import Segmenter
from insid3.engine.cli.segment import main
from insid3.engine.jobs.outputs.coco import COCO_FILE
from insid3.engine.jobs.scenes import draw_scene


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("segment")
    save_example(root, "ref", seed=1)
    targets = root / "targets"
    targets.mkdir()
    for seed in range(3):
        Image.fromarray(draw_scene(10 + seed, (100 + 20 * seed, 150), concept=0).image).save(targets / f"t{seed}.jpg")
    (targets / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not an image")
    (targets / "notes.txt").write_text("not an image suffix: ignored")
    return root


def _args(bundle, root, out, *extra):
    return ["--bundle", str(bundle), "--ref", str(root / "ref.png"), "--ref-mask", str(root / "ref_mask.png"),
            "--backend", "onnxruntime", "--out", str(out), *extra]


def test_folder_with_a_corrupt_image(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(_args(tiny_bundle, workspace, out, "--overlay", "--batch-size", "2", str(workspace / "targets")))
    err = capsys.readouterr().err
    assert code == 1
    assert "skipped" in err and "corrupt.jpg" in err and "3 segmented, 0 already done, 1 failed" in err
    for seed in range(3):
        mask = Image.open(out / f"t{seed}.png")
        assert mask.mode == "L" and mask.size == (150, 100 + 20 * seed)
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert (out / f"t{seed}.overlay.jpg").is_file()
    # The masks are the API's masks.
    seg = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    seg.set_reference(workspace / "ref.png", workspace / "ref_mask.png")
    expected = seg.segment(workspace / "targets" / "t1.jpg")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "t1.png")) > 0, expected)


def test_existing_outputs_are_skipped_unless_overwrite(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "out"
    target = str(workspace / "targets" / "t0.jpg")
    assert main(_args(tiny_bundle, workspace, out, target)) == 0
    (out / "t0.png").write_bytes((out / "t0.png").read_bytes())  # same file, untouched content
    stamp = (out / "t0.png").stat().st_mtime_ns
    capsys.readouterr()
    assert main(_args(tiny_bundle, workspace, out, target)) == 0
    assert "0 segmented, 1 already done" in capsys.readouterr().err
    assert (out / "t0.png").stat().st_mtime_ns == stamp
    assert main(_args(tiny_bundle, workspace, out, "--overwrite", target)) == 0
    assert "1 segmented, 0 already done" in capsys.readouterr().err


def test_coco_output_loads_in_pycocotools_and_resumes(tiny_bundle, workspace, tmp_path, capsys):
    from pycocotools import mask as coco_mask
    from pycocotools.coco import COCO

    png_out, rle_out = tmp_path / "png", tmp_path / "rle"
    pattern = str(workspace / "targets" / "t*.jpg")
    assert main(_args(tiny_bundle, workspace, png_out, pattern)) == 0
    coco_args = _args(tiny_bundle, workspace, rle_out, "--format", "coco-rle", "--category", "cat", pattern)
    assert main(coco_args) == 0
    coco = COCO(str(rle_out / COCO_FILE))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat"]
    assert len(coco.getImgIds()) == 3
    for image in coco.loadImgs(coco.getImgIds()):
        png = np.asarray(Image.open(png_out / f"{Path(image['file_name']).stem}.png")) > 0
        assert (image["height"], image["width"]) == png.shape
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(annotations) == (1 if png.any() else 0)
        for annotation in annotations:
            np.testing.assert_array_equal(coco.annToMask(annotation) > 0, png)
            assert annotation["area"] == int(png.sum()) == int(coco_mask.area(annotation["segmentation"]))
            np.testing.assert_allclose(annotation["bbox"], coco_mask.toBbox(annotation["segmentation"]))
            assert annotation["iscrowd"] == 0 and annotation["category_id"] == 1
    capsys.readouterr()
    assert main(coco_args) == 0
    assert "0 segmented, 3 already done" in capsys.readouterr().err
    assert len(COCO(str(rle_out / COCO_FILE)).getImgIds()) == 3


def _one_line_error(capsys, argv) -> str:
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines[-1].startswith("insid3-segment: error:")
    return lines[-1]


def test_missing_bundle(tiny_bundle, workspace, tmp_path, capsys):
    argv = _args(tmp_path / "missing-bundle", workspace, tmp_path / "o", str(workspace / "targets" / "t0.jpg"))
    assert "missing-bundle does not exist" in _one_line_error(capsys, argv)


def test_missing_target(tiny_bundle, workspace, tmp_path, capsys):
    argv = _args(tiny_bundle, workspace, tmp_path / "o", str(workspace / "nothing-here.jpg"))
    assert "nothing-here.jpg does not exist" in _one_line_error(capsys, argv)


def test_reference_mask_of_another_size(tiny_bundle, workspace, tmp_path, capsys):
    argv = _args(tiny_bundle, workspace, tmp_path / "o", str(workspace / "targets" / "t0.jpg"))
    argv[argv.index("--ref-mask") + 1] = str(workspace / "targets" / "t0.jpg")
    assert "is 150x100 (WxH) but its image is 160x120" in _one_line_error(capsys, argv)


def test_colliding_stems(tiny_bundle, workspace, tmp_path, capsys):
    other = tmp_path / "t0.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(other)
    argv = _args(tiny_bundle, workspace, tmp_path / "o", str(workspace / "targets" / "t0.jpg"), str(other))
    assert "share the stem 't0'" in _one_line_error(capsys, argv)


def test_reference_and_mask_counts_must_match(tiny_bundle, workspace, tmp_path):
    args = _args(tiny_bundle, workspace, tmp_path / "o") + ["--ref", str(workspace / "ref.png"), "x.jpg"]
    exit_info_code = main(args)
    assert exit_info_code == 2


def test_entry_point_prints_no_traceback(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "t.png")
    result = subprocess.run(
        [sys.executable, "-m", "insid3.engine.cli.segment", "--bundle", str(tmp_path / "none"), "--ref", "a.png",
         "--ref-mask", "b.png", "--out", str(tmp_path / "o"), str(tmp_path / "t.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"insid3-segment: error: bundle folder {tmp_path / 'none'} does not exist"
