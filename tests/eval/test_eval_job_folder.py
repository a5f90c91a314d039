"""insid3-eval's output folder: held by one job (a second stops at once, naming the holder), and a
full disk while logging episodes is one line, exit 2, and a resume that loses nothing."""

from __future__ import annotations

import errno
import json
import os

import pytest
from support import eval_layouts as layouts
from support.commands import last_line
from support.held_folders import held_by_another_process

from insid3.engine.cli import evaluate as cli
from insid3.engine.jobs.job_folder import LOCK_FILE

NAME = "coco-fold0-1shot"
EPISODES = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-held")
    layouts.write_coco(root, images=3)
    return root


def evaluate(bundle, data, out) -> int:
    return cli.main(["--bundle", str(bundle), "--dataset", "coco", "--data-root", str(data), "--out", str(out),
                     "--backend", "onnxruntime", "--no-progress", "--episodes", str(EPISODES)])


def test_a_second_eval_on_a_held_folder_stops_naming_the_holder(tiny_bundle, data, tmp_path, capsys):
    out = tmp_path / "out"
    with held_by_another_process(out) as pid:
        assert evaluate(tiny_bundle, data, out) == 2
        line = last_line(capsys)
        assert line.startswith(f"insid3-eval: error: {out} is in use by another job (pid {pid} on ")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # no log begun, no report
    assert evaluate(tiny_bundle, data, out) == 0  # the holder gone (SIGKILL), the folder is free
    assert not (out / LOCK_FILE).exists()  # let go when the run ended


def test_a_full_disk_while_logging_is_one_line_and_the_rerun_resumes(tiny_bundle, data, tmp_path, capsys,
                                                                     monkeypatch):
    out, whole = tmp_path / "out", tmp_path / "whole"
    assert evaluate(tiny_bundle, data, whole) == 0
    real_write, left = os.write, [4]  # the lock file names its holder; then three episodes fit

    def write(handle, payload):
        if os.readlink(f"/proc/self/fd/{handle}").startswith(str(out)):
            left[0] -= 1
            if left[0] < 0:
                real_write(handle, bytes(payload)[:7])  # a torn record
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(handle, payload)

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", write)
        assert evaluate(tiny_bundle, data, out) == 2
    line = last_line(capsys)
    assert line.startswith(f"insid3-eval: error: disk full in {out}: writing {NAME}.episodes.jsonl needed ")
    assert line.endswith("free; free some space and run the same command again to resume")
    log = (out / f"{NAME}.episodes.jsonl").read_text()
    assert log.endswith("\n") and len(log.splitlines()) == 1 + 3  # the torn record cut back
    assert not list(out.glob(".*.tmp")) and not (out / LOCK_FILE).exists()
    assert evaluate(tiny_bundle, data, out) == 0
    resumed = json.loads((out / f"{NAME}.json").read_text())
    expected = json.loads((whole / f"{NAME}.json").read_text())
    assert resumed["timings"]["episodes_resumed"] == 3 and resumed["timings"]["episodes_computed"] == EPISODES - 3
    assert (resumed["miou"], resumed["fb_iou"], resumed["episodes"]) == \
        (expected["miou"], expected["fb_iou"], expected["episodes"])
