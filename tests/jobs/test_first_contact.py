"""What a new user meets first (issue 21.6): a YOLO folder Ultralytics trains on as it is, one
coordinate convention in insid3-match's JSON, an empty image file named as such, and no PIL
warning in the progress bar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from PIL import Image
from support.commands import last_line
from support.scenes import one_concept_workspace

from insid3.engine.cli.segment import main
from insid3.engine.jobs.match_outputs import COORDINATES, MatchRecord, read_record
from insid3.engine.jobs.outputs.yolo import DATA_FILE


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return one_concept_workspace(tmp_path_factory.mktemp("first"), targets=3)


def _args(bundle, root: Path, out: Path, *extra: str, targets: tuple[str, ...] = ()) -> list[str]:
    return ["--bundle", str(bundle), "--ref", str(root / "ref.png"), "--ref-mask", str(root / "ref_mask.png"),
            "--backend", "onnxruntime", "--out", str(out), *extra, *(targets or (str(root / "targets"),))]


def ultralytics_label_path(image: str) -> str:
    """Where Ultralytics looks for an image's label (its documented rule, ultralytics.data.utils.
    img2label_paths): the last /images/ of the path replaced by /labels/, the suffix by .txt."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return labels.join(image.rsplit(images, 1)).rsplit(".", 1)[0] + ".txt"


def test_a_yolo_folder_is_a_dataset_ultralytics_trains_on(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "yolo"
    assert main(_args(tiny_bundle, workspace, out, "--format", "yolo-seg", "--category", "shape")) == 0
    text = (out / DATA_FILE).read_text()
    data = yaml.safe_load(text)
    assert "yolo segment train data=" in text and "val/images" in text  # how to train, how to split
    assert data["names"] == {0: "shape"} and data["train"] == data["val"] == "images"
    images = Path(data["path"]) / data["train"]
    found = sorted(str(p) for p in images.rglob("*.*"))  # as Ultralytics lists a folder of images
    assert [Path(p).name for p in found] == ["t0.jpg", "t1.jpg", "t2.jpg"]
    for image in found:
        assert Path(image).is_symlink() and Path(image).resolve() == (workspace / "targets" / Path(image).name)
        assert not os.path.isabs(os.readlink(image))  # survives moving the images and the folder together
        assert Image.open(image).size == (128, 96)
        assert Path(ultralytics_label_path(image)).is_file()
    assert main(_args(tiny_bundle, workspace, out, "--format", "yolo-seg", "--category", "shape")) == 0
    assert "0 segmented, 3 already done" in last_line(capsys)
    assert sorted(p.name for p in images.iterdir()) == ["t0.jpg", "t1.jpg", "t2.jpg"]


def test_ultralytics_reads_the_yolo_folder(tiny_bundle, workspace, tmp_path):
    """Ultralytics' own dataset check and loader, where it is installed (not a test dependency:
    it pulls torchvision and a CUDA build of torch). Checked here with ultralytics 8.4.190 and
    torchvision 0.28.0 unpacked beside the CPU torch 2.13 (PYTHONPATH, YOLO_OFFLINE=1)."""
    pytest.importorskip("ultralytics")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "yolo"
    assert main(_args(tiny_bundle, workspace, out, "--format", "yolo-seg")) == 0
    data = check_det_dataset(str(out / DATA_FILE))
    dataset = YOLODataset(img_path=data["train"], data=data, task="segment", augment=False)
    found = {Path(label["im_file"]).name: len(label["segments"]) for label in dataset.labels}
    written = {f"{path.stem}.jpg": len(path.read_text().splitlines()) for path in (out / "labels").glob("*.txt")}
    assert found == written and sum(written.values()) > 0  # every image with its own label file's polygons


def test_match_json_states_one_convention(tiny_bundle, workspace, tmp_path, capsys):
    from insid3.engine.cli.match import main as match

    out = tmp_path / "match"
    assert match(["--bundle", str(tiny_bundle), "--ref", str(workspace / "ref.png"), "--points", "150,20;10,100",
                  "--backend", "onnxruntime", "--out", str(out), str(workspace / "targets" / "t0.jpg")]) == 0
    data = json.loads((out / "t0.json").read_text())
    assert data["coordinates"] == COORDINATES and "[x, y]" in COORDINATES and "[width, height]" in COORDINATES
    assert data["reference_size"] == [160, 120] and data["target_size"] == [128, 96]  # width first, as x
    assert data["matches"][0]["source"] == [150.0, 20.0]
    for match_ in data["matches"]:
        x, y = match_["target"]
        assert 0 <= x <= 128 and 0 <= y <= 96
    record = read_record(out / "t0.json")
    assert record.reference_size == (120, 160) and record.target_size == (96, 128)  # (H, W) in Python
    assert MatchRecord.from_json(data).to_json() == data


def test_a_zero_byte_image_is_an_empty_file(tiny_bundle, workspace, tmp_path, capsys):
    empty = tmp_path / "blank.jpg"
    empty.write_bytes(b"")
    assert main(_args(tiny_bundle, workspace, tmp_path / "out",
                      targets=(str(workspace / "targets" / "t0.jpg"), str(empty)))) == 1
    err = capsys.readouterr().err
    assert f"skipped {empty}: cannot read image {empty}: empty file (0 bytes)" in err
    argv = _args(tiny_bundle, workspace, tmp_path / "out2")
    argv[argv.index("--ref-mask") + 1] = str(empty)
    assert main(argv) == 2
    assert last_line(capsys).endswith(f"{empty}: empty file (0 bytes)")


BOMB = textwrap.dedent("""
    import sys
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = 12000  # PIL warns above 12000 pixels (the reference too) and refuses above 24000
    from insid3.engine.cli.segment import main
    sys.exit(main(sys.argv[1:]))
""")


def test_a_very_large_target_leaks_no_pil_warning(tiny_bundle, workspace, tmp_path):
    """The size policy (engine/runtime/images.py) with PIL's limits scaled down: an image past the
    warning limit is read in silence, one past the hard limit is one line."""
    large, huge = tmp_path / "large.png", tmp_path / "huge.png"
    Image.new("RGB", (150, 100)).save(large)  # 15000 pixels
    Image.new("RGB", (200, 150)).save(huge)  # 30000 pixels
    result = subprocess.run([sys.executable, "-c", BOMB, *_args(tiny_bundle, workspace, tmp_path / "out",
                                                                 targets=(str(large), str(huge)))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "DecompressionBomb" not in result.stderr and "Warning" not in result.stderr
    assert f"skipped {huge}: cannot read image {huge}: Image size (30000 pixels) exceeds limit" in result.stderr
    assert "1 segmented, 0 already done, 1 failed" in result.stderr
