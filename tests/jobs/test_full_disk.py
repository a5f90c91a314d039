"""A full disk: every writer stops in one line naming the folder and the space, leaves no
temporary file, exits 2, and the same command resumes once there is room. Two ways: a write
call that fails with ENOSPC (always runs), and a real 256 KiB tmpfs (where mounting is allowed)."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from support.scenes import one_concept_workspace

from insid3.engine.cli.segment import main
from insid3.engine.jobs.job_folder import LOCK_FILE, OutputWriteError, write_atomically
from insid3.engine.jobs.outputs.coco import COCO_FILE
from insid3.engine.jobs.outputs.files import DONE_FILE

TARGETS = 4


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return one_concept_workspace(tmp_path_factory.mktemp("full"), targets=TARGETS)


def _args(bundle, root: Path, out: Path, *extra: str) -> list[str]:
    return ["--bundle", str(bundle), "--ref", str(root / "ref.png"), "--ref-mask", str(root / "ref_mask.png"),
            "--backend", "onnxruntime", "--batch-size", "1", "--out", str(out), *extra, str(root / "targets")]


class DiskFills:
    """Writes into `folder` succeed `allowed` times; the next one writes half its bytes, then fails
    with ENOSPC, as a disk that fills up mid-write does (and every one after it fails too)."""

    def __init__(self, monkeypatch, folder: Path, allowed: int) -> None:
        self.folder, self.left = str(folder.resolve()), allowed
        real_write_bytes, real_write = pathlib.Path.write_bytes, os.write

        def inside(path: str) -> bool:
            return os.path.realpath(path).startswith(self.folder + os.sep)

        def write_bytes(path, data):
            if len(data) and inside(str(path)) and self.spend():  # an empty file takes no space
                real_write_bytes(path, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write_bytes(path, data)

        def write(handle, data):
            try:
                target = os.readlink(f"/proc/self/fd/{handle}")
            except OSError:
                target = ""
            if len(data) and inside(target) and self.spend():
                real_write(handle, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(handle, data)

        monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
        monkeypatch.setattr(os, "write", write)

    def spend(self) -> bool:
        """Whether this write fails."""
        self.left -= 1
        return self.left < 0


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


@pytest.mark.parametrize("fmt, extra", [("png", ("--overlay",)), ("label-png", ()), ("coco", ()),
                                        ("yolo-seg", ())])
@pytest.mark.parametrize("allowed", [0, 4])
def test_a_write_that_finds_the_disk_full_stops_in_one_line_and_resumes(tiny_bundle, workspace, tmp_path, capsys,
                                                                        monkeypatch, fmt, extra, allowed):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        DiskFills(patch, tmp_path, allowed)
        assert main(_args(tiny_bundle, workspace, out, "--format", fmt, *extra)) == 2
    line = _error_line(capsys)
    assert line.startswith(f"insid3-segment: error: disk full in {out}") or \
        line.startswith(f"insid3-segment: error: disk full in {out / 'labels'}"), line
    assert "free; free some space and run the same command again to resume" in line and "needed" in line
    if out.exists():
        assert _leftovers(out) == [] and not (out / LOCK_FILE).exists()
    assert main(_args(tiny_bundle, workspace, out, "--format", fmt, *extra)) == 0
    counts = _error_line(capsys)
    segmented, already = (int(word) for word in counts.split(": ")[1].replace(",", "").split()[0:4:2])
    assert segmented + already == TARGETS and segmented >= 1, counts
    if fmt == "coco":
        from pycocotools.coco import COCO

        coco = COCO(str(out / COCO_FILE))
        assert sorted(Path(i["file_name"]).name for i in coco.loadImgs(coco.getImgIds())) == \
            [f"t{i}.jpg" for i in range(TARGETS)]
    else:
        logged = (out / DONE_FILE).read_text().splitlines()
        assert len(logged) == len(set(logged)) == TARGETS
        for path in out.rglob("t*.png"):
            Image.open(path).load()  # complete files only
    assert _leftovers(out) == []


def test_write_atomically_names_the_space_and_leaves_nothing(tmp_path, monkeypatch):
    DiskFills(monkeypatch, tmp_path, 0)
    with pytest.raises(OutputWriteError, match=rf"^disk full in {tmp_path}: writing a.json needed 2.0 KiB, "
                                                 r"[0-9.]+ (bytes|KiB|MiB|GiB) free; free some space"):
        write_atomically(tmp_path / "a.json", b"x" * 2048)
    assert list(tmp_path.iterdir()) == []


def test_match_on_a_full_disk(tiny_bundle, workspace, tmp_path, capsys, monkeypatch):
    from insid3.engine.cli.match import main as match

    out = tmp_path / "out"
    argv = ["--bundle", str(tiny_bundle), "--ref", str(workspace / "ref.png"), "--points", "10,10;50,40",
            "--backend", "onnxruntime", "--csv", "--out", str(out), str(workspace / "targets")]
    with monkeypatch.context() as patch:
        DiskFills(patch, tmp_path, 3)
        assert match(argv) == 2
    assert _error_line(capsys).startswith(f"insid3-match: error: disk full in {out}")
    assert _leftovers(out) == []
    assert match(argv) == 0
    assert "already done" in _error_line(capsys)
    assert len(list(out.glob("t*.json"))) == TARGETS
    for path in out.glob("t*.json"):
        json.loads(path.read_text())


# A real small file system.

@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs at tmp_path/disk; skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_real_full_file_system(tiny_bundle, workspace, tmp_path, small_disk, capsys):
    """The disk holds all but a few KiB (ballast); overlays do not fit: one line, nothing half
    written; the ballast removed, the same command finishes the job."""
    ballast = small_disk / "ballast"
    handle = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(handle, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(handle)
    os.truncate(ballast, ballast.stat().st_size - 12 * 1024)  # room for the manifest and a mask or two
    out = small_disk / "out"
    assert main(_args(tiny_bundle, workspace, out, "--overlay")) == 2
    line = _error_line(capsys)
    assert line.startswith(f"insid3-segment: error: disk full in {out}: writing "), line
    assert "free; free some space and run the same command again to resume" in line
    assert _leftovers(out) == [] and not (out / LOCK_FILE).exists()
    ballast.unlink()
    assert main(_args(tiny_bundle, workspace, out, "--overlay")) == 0
    assert " segmented, " in _error_line(capsys)
    logged = (out / DONE_FILE).read_text().splitlines()
    assert len(logged) == len(set(logged)) == TARGETS
    assert len(list(out.glob("t*.overlay.jpg"))) == TARGETS
