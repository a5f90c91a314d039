"""insid3-segment as a job: interrupted, repeated, pointed at the wrong folder or a damaged bundle."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from support.commands import last_line
from support.scenes import one_concept_workspace, save_example

from insid3.engine.cli.segment import main
from insid3.engine.jobs.manifest import MANIFEST_FILE
from insid3.engine.jobs.outputs.coco import COCO_FILE, COCO_JOURNAL, CocoOutputs
from insid3.engine.jobs.outputs.label_studio import TASKS_FILE, TASKS_JOURNAL
from insid3.engine.jobs.outputs.masks import PngOutputs


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = one_concept_workspace(tmp_path_factory.mktemp("jobs"), targets=4)
    save_example(root, "other_ref", seed=2)
    return root


def _args(bundle, root, out, *extra, ref="ref"):
    return ["--bundle", str(bundle), "--ref", str(root / f"{ref}.png"), "--ref-mask", str(root / f"{ref}_mask.png"),
            "--backend", "onnxruntime", "--batch-size", "1", "--out", str(out), *extra, str(root / "targets")]


def _interrupt_after(monkeypatch, writer, calls: int):
    real, seen = writer.write, []

    def write(self, target, mask):
        if len(seen) == calls:
            raise KeyboardInterrupt
        seen.append(target)
        real(self, target, mask)

    monkeypatch.setattr(writer, "write", write)


@pytest.mark.parametrize("fmt", ["png", "coco-rle"])
def test_ctrl_c_keeps_what_is_done_and_the_rerun_resumes(tiny_bundle, workspace, tmp_path, capsys, monkeypatch, fmt):
    out = tmp_path / "out"
    writer = PngOutputs if fmt == "png" else CocoOutputs
    _interrupt_after(monkeypatch, writer, calls=2)
    assert main(_args(tiny_bundle, workspace, out, "--format", fmt)) == 130
    line = last_line(capsys)
    assert line.startswith("insid3-segment: interrupted: 2 segmented") and "resume" in line
    if fmt == "coco-rle":  # flushed on the way out, loadable as it is
        assert len(json.loads((out / COCO_FILE).read_text())["images"]) == 2
    else:
        assert sorted(p.name for p in out.glob("t*.png")) == ["t0.png", "t1.png"]
    monkeypatch.undo()
    assert main(_args(tiny_bundle, workspace, out, "--format", fmt)) == 0
    assert "2 segmented, 2 already done, 0 failed" in last_line(capsys)


@pytest.mark.parametrize("fmt", ["coco-rle", "label-studio"])
def test_a_torn_journal_line_is_redone(tiny_bundle, workspace, tmp_path, capsys, fmt):
    journal, document = (COCO_JOURNAL, COCO_FILE) if fmt == "coco-rle" else (TASKS_JOURNAL, TASKS_FILE)
    out = tmp_path / "out"
    assert main(_args(tiny_bundle, workspace, out, "--format", fmt)) == 0
    lines = (out / journal).read_text().splitlines(keepends=True)
    (out / journal).write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed mid-write
    (out / document).unlink()
    capsys.readouterr()
    assert main(_args(tiny_bundle, workspace, out, "--format", fmt)) == 0
    assert "2 segmented, 2 already done" in last_line(capsys)
    written = json.loads((out / document).read_text())
    entries = written["images"] if fmt == "coco-rle" else written
    assert len(entries) == 4 and not any("target" in entry for entry in entries)  # the journal's key stays there


def test_another_reference_into_the_same_folder_is_refused(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(tiny_bundle, workspace, out)) == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert main(_args(tiny_bundle, workspace, out, ref="other_ref")) == 2
    line = last_line(capsys)
    assert "holds the results of another job (the concepts or their reference images or masks changed)" in line
    assert "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before
    assert main(_args(tiny_bundle, workspace, out, "--format", "coco-rle")) == 2
    assert "the output format changed" in last_line(capsys)
    assert main(_args(tiny_bundle, workspace, out, "--overwrite", ref="other_ref")) == 0
    assert "4 segmented, 0 already done" in last_line(capsys)
    assert main(_args(tiny_bundle, workspace, out, ref="other_ref")) == 0  # the new manifest stands
    assert "0 segmented, 4 already done" in last_line(capsys)


def test_a_job_that_stopped_before_its_first_target_does_not_hold_the_folder(tiny_bundle, workspace, tmp_path, capsys):
    empty = tmp_path / "empty_mask.png"
    Image.fromarray(np.zeros((120, 160), np.uint8)).save(empty)
    out = tmp_path / "out"
    argv = _args(tiny_bundle, workspace, out)
    argv[argv.index("--ref-mask") + 1] = str(empty)
    assert main(argv) == 2
    assert "is empty" in last_line(capsys)
    assert main(_args(tiny_bundle, workspace, out)) == 0  # the mask fixed: the folder holds nothing of the other
    assert "4 segmented, 0 already done" in last_line(capsys)
    assert main(_args(tiny_bundle, workspace, out, "--format", "coco-rle", ref="other_ref")) == 2
    assert "reference images or masks, the output format changed" in last_line(capsys)


def test_another_bundle_into_the_same_folder_is_refused(tiny_bundle, workspace, tmp_path, capsys):
    from support.export_fixtures import make_tiny_bundle

    out = tmp_path / "out"
    assert main(_args(tiny_bundle, workspace, out)) == 0
    other = make_tiny_bundle(tmp_path / "b", resolution=224, seed=1)
    assert main(_args(other, workspace, out)) == 2
    assert "(the bundle changed)" in last_line(capsys)


def test_masks_without_a_manifest_are_not_trusted(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(np.zeros((96, 128), np.uint8)).save(out / "t0.png")
    assert main(_args(tiny_bundle, workspace, out)) == 2
    assert f"no {MANIFEST_FILE}" in last_line(capsys)


def test_leftover_temporaries_are_removed_and_not_counted(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(tiny_bundle, workspace, out)) == 0
    (out / "t3.png").rename(out / ".t3.png.999.tmp")  # a crash between write and rename
    capsys.readouterr()
    assert main(_args(tiny_bundle, workspace, out)) == 0
    assert "1 segmented, 3 already done" in last_line(capsys)
    assert not list(out.glob(".*.tmp")) and (out / "t3.png").is_file()


def test_bad_paths_are_named_before_any_model_loads(tiny_bundle, workspace, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(_args(tiny_bundle, workspace, a_file)) == 2
    assert last_line(capsys) == f"insid3-segment: error: --out {a_file} exists and is not a folder"
    assert main(_args(tiny_bundle, workspace, a_file / "sub")) == 2
    assert last_line(capsys).startswith(f"insid3-segment: error: --out {a_file / 'sub'} cannot be written")
    argv = _args(tiny_bundle, workspace, tmp_path / "o")
    argv[argv.index("--ref") + 1] = str(workspace / "targets")
    assert main(argv) == 2
    assert last_line(capsys) == f"insid3-segment: error: --ref {workspace / 'targets'} is a folder: give an image file"


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_model_is_one_line_whatever_the_backend(tiny_bundle, workspace, tmp_path, capsys, damage):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    if damage == "truncate":
        model.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    for backend in ("onnxruntime", "torch"):
        argv = _args(bundle, workspace, tmp_path / f"o-{backend}")
        argv[argv.index("--backend") + 1] = backend
        assert main(argv) == 2
        line = last_line(capsys)
        assert line.startswith("insid3-segment: error: bundle") and "model.onnx" in line and "re-export" in line


def test_overwrite_with_other_concepts_forgets_the_old_coco_records(tiny_bundle, workspace, tmp_path, capsys):
    """--overwrite into another job's COCO folder: only this job's targets and categories remain."""
    out = tmp_path / "out"
    ref, mask = str(workspace / "ref.png"), str(workspace / "ref_mask.png")
    base = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--format", "coco", "--out", str(out)]
    targets = sorted(str(p) for p in (workspace / "targets").glob("*.jpg"))
    assert main([*base, "--concept", f"cat={ref}:{mask}", "--concept", f"dog={ref}:{mask}", *targets]) == 0
    assert main([*base, "--overwrite", "--concept", f"bird={ref}:{mask}", targets[0]]) == 0
    coco = json.loads((out / COCO_FILE).read_text())
    assert [c["name"] for c in coco["categories"]] == ["bird"]
    assert [image["file_name"] for image in coco["images"]] == [targets[0]]
    assert {a["category_id"] for a in coco["annotations"]} <= {1}
    capsys.readouterr()
    assert main([*base, "--concept", f"bird={ref}:{mask}", targets[0]]) == 0  # the new job resumes as itself
    assert "0 segmented, 1 already done" in last_line(capsys)


@pytest.mark.parametrize("fmt", ["png", "label-png", "yolo-seg"])
def test_files_of_the_job_overwrite_replaced_are_never_trusted(tiny_bundle, workspace, tmp_path, capsys, fmt):
    """Job A writes four targets; job B takes the folder with --overwrite for one target; B resumed
    on all four redoes the three A left, rather than keeping A's masks."""
    out = tmp_path / "out"
    ref, mask = str(workspace / "ref.png"), str(workspace / "ref_mask.png")
    other, other_mask = str(workspace / "other_ref.png"), str(workspace / "other_ref_mask.png")
    base = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--format", fmt, "--out", str(out)]
    targets = sorted(str(p) for p in (workspace / "targets").glob("*.jpg"))
    assert main([*base, "--concept", f"a={ref}:{mask}", *targets]) == 0
    assert main([*base, "--overwrite", "--concept", f"a={other}:{other_mask}", targets[0]]) == 0
    capsys.readouterr()
    assert main([*base, "--concept", f"a={other}:{other_mask}", *targets]) == 0
    assert "3 segmented, 1 already done" in last_line(capsys)
