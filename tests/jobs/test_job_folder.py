"""One output folder, one job (a lock that dies with its process), targets named by what they
are rather than by how their path was typed, and a failed start that leaves no folder behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.commands import last_line
from support.held_folders import held_by_another_process
from support.scenes import one_concept_workspace

from insid3.engine.cli.segment import main
from insid3.engine.jobs.job_folder import LOCK_FILE, FolderBusyError, hold_folder, holds_folder, release_folder
from insid3.engine.jobs.manifest import MANIFEST_FILE
from insid3.engine.jobs.outputs.coco import COCO_FILE, COCO_JOURNAL
from insid3.engine.jobs.outputs.files import DONE_FILE

TARGETS = 4


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return one_concept_workspace(tmp_path_factory.mktemp("held"), targets=TARGETS)


def _args(bundle, root: Path, out: Path, *extra: str, targets: list[str] | None = None) -> list[str]:
    return ["--bundle", str(bundle), "--ref", str(root / "ref.png"), "--ref-mask", str(root / "ref_mask.png"),
            "--backend", "onnxruntime", "--batch-size", "1", "--out", str(out), *extra,
            *(targets if targets is not None else [str(root / "targets")])]


def _start_job(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "insid3.engine.cli.segment", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_held_by(process: subprocess.Popen, folder: Path, timeout: float = 120) -> dict:
    """The holder's description in the lock file, once `process` has taken the folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            holder = json.loads((folder / LOCK_FILE).read_text())
            if holder["pid"] == process.pid:
                return holder
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"{folder} was never held by pid {process.pid}")


def test_a_second_job_on_a_held_folder_stops_at_once_naming_the_holder(tiny_bundle, workspace, tmp_path):
    """Two real insid3-segment processes, different references, one --out: the second stops in
    one line (exit 2) while the first is held still (SIGSTOP) with the folder; the first then
    finishes alone, every mask its own."""
    out = tmp_path / "out"
    other = tmp_path / "other_mask.png"
    Image.fromarray(np.asarray(Image.open(workspace / "ref_mask.png"))[::-1].copy()).save(other)
    first = _start_job(_args(tiny_bundle, workspace, out))
    try:
        holder = _wait_until_held_by(first, out)
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second_argv = _args(tiny_bundle, workspace, out)
            second_argv[second_argv.index("--ref-mask") + 1] = str(other)
            started = time.monotonic()
            second = subprocess.run([sys.executable, "-m", "insid3.engine.cli.segment", *second_argv],
                                    capture_output=True, text=True, timeout=120)
            seconds = time.monotonic() - started
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        line = second.stderr.strip()
        assert line.startswith(f"insid3-segment: error: {out} is in use by another job (pid {first.pid} on ")
        assert holder["started"] in line and "segment" in line
        assert seconds < 60  # it never loaded a model
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    assert f"{TARGETS} segmented" in first.stderr.read()
    assert not (out / LOCK_FILE).exists()  # let go when the job ended
    assert len((out / DONE_FILE).read_text().splitlines()) == TARGETS


def test_a_killed_holder_does_not_block_the_next_job(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "out"
    first = _start_job(_args(tiny_bundle, workspace, out))
    _wait_until_held_by(first, out)
    first.kill()  # SIGKILL: no handler runs, the lock file stays behind
    first.wait(timeout=60)
    assert (out / LOCK_FILE).exists()
    assert main(_args(tiny_bundle, workspace, out)) == 0
    assert "segmented" in last_line(capsys) and not (out / LOCK_FILE).exists()


@pytest.fixture
def held_elsewhere(tmp_path):
    """A folder another process holds (the library's own lock, as any job takes it)."""
    folder = tmp_path / "held"
    with held_by_another_process(folder) as pid:
        yield folder, pid


def test_holding_is_per_process_and_released_with_the_lock_file(tmp_path, held_elsewhere):
    folder, pid = held_elsewhere
    with pytest.raises(FolderBusyError, match=rf"in use by another job \(pid {pid} on .*started .*UTC"):
        hold_folder(folder)
    mine = tmp_path / "mine"
    hold_folder(mine)
    hold_folder(mine)  # the tool, the manifest and the writer each ask: one hold
    assert holds_folder(mine) and (mine / LOCK_FILE).is_file()
    release_folder(mine)
    assert not holds_folder(mine) and not (mine / LOCK_FILE).exists() and mine.is_dir()
    made = tmp_path / "made" / "deep"
    hold_folder(made)
    release_folder(made, unused=True)  # a job that made its folder and wrote nothing there
    assert not (tmp_path / "made").exists()
    hold_folder(made)
    (tmp_path / "made" / "other-job").mkdir()  # made meanwhile beside it: not this job's to remove
    (tmp_path / "made" / "other-job" / "mask.png").write_bytes(b"x")
    release_folder(made, unused=True)
    assert not made.exists() and (tmp_path / "made" / "other-job" / "mask.png").is_file()


def test_segment_and_ray_drivers_stop_on_a_held_folder(tiny_bundle, workspace, held_elsewhere, capsys):
    folder, pid = held_elsewhere
    for extra in ((), ("--ray", "--workers", "1")):  # the driver takes the folder before Ray starts
        assert main(_args(tiny_bundle, workspace, folder, *extra)) == 2
        line = last_line(capsys)
        assert line.startswith(f"insid3-segment: error: {folder} is in use by another job (pid {pid} on ")
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing read or written


def test_match_stops_on_a_held_folder(tiny_bundle, workspace, held_elsewhere, capsys):
    from insid3.engine.cli.match import main as match

    folder, pid = held_elsewhere
    argv = ["--bundle", str(tiny_bundle), "--ref", str(workspace / "ref.png"), "--points", "10,10",
            "--backend", "onnxruntime", "--out", str(folder), str(workspace / "targets")]
    assert match(argv) == 2
    assert last_line(capsys).startswith(f"insid3-match: error: {folder} is in use by another job (pid {pid} ")


# Resume by what a target is.

def test_a_rerun_from_elsewhere_with_absolute_paths_redoes_nothing(tiny_bundle, workspace, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(workspace)
    out_png, out_coco = tmp_path / "png", tmp_path / "coco"
    relative = [f"targets/t{i}.jpg" for i in range(TARGETS)]
    assert main(_args(tiny_bundle, workspace, out_png, targets=relative)) == 0
    assert main(_args(tiny_bundle, workspace, out_coco, "--format", "coco-rle", targets=relative)) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out_png.glob("t*.png")}
    coco_bytes = (out_coco / COCO_FILE).read_bytes()
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    absolute = [str(workspace / path) for path in relative]
    assert main(_args(tiny_bundle, workspace, out_png, targets=absolute)) == 0
    assert f"0 segmented, {TARGETS} already done" in last_line(capsys)
    assert {p.name: p.stat().st_mtime_ns for p in out_png.glob("t*.png")} == stamps
    assert len((out_png / DONE_FILE).read_text().splitlines()) == TARGETS
    assert main(_args(tiny_bundle, workspace, out_coco, "--format", "coco-rle", targets=absolute)) == 0
    assert f"0 segmented, {TARGETS} already done" in last_line(capsys)
    assert (out_coco / COCO_FILE).read_bytes() == coco_bytes
    assert len((out_coco / COCO_JOURNAL).read_text().splitlines()) == TARGETS


def test_a_coco_job_resumed_twice_with_mixed_spellings_holds_each_file_once(tiny_bundle, workspace, tmp_path,
                                                                           capsys, monkeypatch):
    from pycocotools.coco import COCO

    out = tmp_path / "coco"
    link = tmp_path / "linked"
    link.symlink_to(workspace / "targets")  # a third spelling: through a symbolic link
    monkeypatch.chdir(workspace)
    assert main(_args(tiny_bundle, workspace, out, "--format", "coco", targets=["targets/t0.jpg"])) == 0
    monkeypatch.chdir(tmp_path)
    spelled = [str(workspace / "targets" / "t0.jpg"), "linked/t1.jpg", str(workspace / "targets" / "t2.jpg")]
    assert main(_args(tiny_bundle, workspace, out, "--format", "coco", targets=spelled)) == 0
    assert "2 segmented, 1 already done" in last_line(capsys)
    monkeypatch.chdir(workspace / "targets")
    assert main(_args(tiny_bundle, workspace, out, "--format", "coco", targets=["t0.jpg", "t1.jpg", "t2.jpg",
                                                                                 "t3.jpg"])) == 0
    assert "1 segmented, 3 already done" in last_line(capsys)
    coco = COCO(str(out / COCO_FILE))
    names = [Path(image["file_name"]).name for image in coco.loadImgs(coco.getImgIds())]
    assert sorted(names) == [f"t{i}.jpg" for i in range(TARGETS)]  # each file once
    assert main(_args(tiny_bundle, workspace, out, "--format", "coco", "--overwrite",
                      targets=[str(workspace / "targets" / "t1.jpg")])) == 0  # redone: replaced, not added
    assert len(json.loads((out / COCO_FILE).read_text())["images"]) == TARGETS


# A failed start leaves nothing.

def test_a_run_that_fails_before_its_first_target_leaves_no_folder(tiny_bundle, workspace, tmp_path, capsys):
    wrong_size = tmp_path / "small_mask.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(wrong_size)
    out = tmp_path / "a" / "out"
    argv = _args(tiny_bundle, workspace, out)
    argv[argv.index("--ref-mask") + 1] = str(wrong_size)
    assert main(argv) == 2
    assert "insid3-segment: error:" in last_line(capsys)
    assert not (tmp_path / "a").exists()
    argv = _args(tiny_bundle, workspace, out)
    argv[argv.index("--backend") + 1] = "no-such-backend"
    assert main(argv) == 2
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "existing"  # a folder the user made stays, with nothing of the job in it
    existing.mkdir()
    argv = _args(tiny_bundle, workspace, existing)
    argv[argv.index("--backend") + 1] = "no-such-backend"
    assert main(argv) == 2
    assert existing.is_dir() and not list(existing.iterdir())
    assert main(_args(tiny_bundle, workspace, out)) == 0  # and the right command then runs as new
    assert f"{TARGETS} segmented, 0 already done" in last_line(capsys)
    assert (out / MANIFEST_FILE).is_file()

