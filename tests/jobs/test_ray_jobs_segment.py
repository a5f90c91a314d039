"""insid3-segment --ray on a local Ray instance with two CPU actors: outputs equal the local
command's, a worker killed mid-job costs nothing (every target written once), and a driver
interrupted (SIGINT to a process joined by --address, Ctrl-C in this one) resumes from what it wrote.

Starts a local Ray instance for the module (about 10 s); deselect with `-m "not ray"`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from insid3.engine.cli.segment import main
from insid3.engine.jobs.outputs.coco import COCO_FILE
from insid3.engine.jobs.outputs.files import DONE_FILE
from insid3.engine.jobs.outputs.masks import PngOutputs
from insid3.engine.jobs.scenes import draw_scene

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytestmark = pytest.mark.ray
TARGETS = 10


@pytest.fixture(scope="module")
def cluster():
    """A local instance this process is connected to: the command uses it and leaves it running."""
    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-jobs")
    for name, seed, concept in (("ref", 1, 0), ("other", 2, 1)):
        scene = draw_scene(seed, (120, 160), concept=concept)
        Image.fromarray(scene.image).save(root / f"{name}.png")
        Image.fromarray(scene.mask.astype(np.uint8) * 255).save(root / f"{name}_mask.png")
    targets = root / "targets"
    targets.mkdir()
    for seed in range(TARGETS):
        Image.fromarray(draw_scene(10 + seed, (96, 128), concept=seed % 2).image).save(targets / f"t{seed:02d}.jpg")
    (targets / "t03b.jpg").write_bytes(b"\xff\xd8 not a JPEG")  # fails for its own reasons, among the others
    return root


def one_concept(bundle, root: Path, out: Path, *extra: str) -> list[str]:
    return ["--bundle", str(bundle), "--ref", str(root / "ref.png"), "--ref-mask", str(root / "ref_mask.png"),
            "--backend", "onnxruntime", "--out", str(out), *extra, str(root / "targets")]


RAY = ("--ray", "--workers", "2", "--cpus-per-worker", "0.5", "--batch-size", "1")


def masks_of(folder: Path) -> dict[str, np.ndarray]:
    return {path.stem: np.asarray(Image.open(path)) for path in sorted(folder.glob("t*.png"))}


@pytest.fixture(scope="module")
def local_masks(tiny_bundle, workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("local-png")
    assert main(one_concept(tiny_bundle, workspace, out)) == 1  # the broken target
    return masks_of(out)


def last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def segment_workers() -> list[dict]:
    """The pool's actors as the cluster knows them (pid, state, restarts)."""
    return [actor for actor in ray._private.state.actors().values()
            if "SegmentWorker" in actor["ActorClassName"]]


def test_two_concepts_to_coco_equal_the_local_command(cluster, tiny_bundle, workspace, tmp_path, capsys):
    concepts = ["--concept", f"a={workspace / 'ref.png'}:{workspace / 'ref_mask.png'}",
                "--concept", f"b={workspace / 'other.png'}:{workspace / 'other_mask.png'}"]
    base = ["--bundle", str(tiny_bundle), *concepts, "--backend", "onnxruntime", "--format", "coco", "--instances"]
    assert main([*base, "--out", str(tmp_path / "local"), str(workspace / "targets")]) == 1
    local_report = capsys.readouterr().err.strip().splitlines()[-2:]
    assert main([*base, *RAY, "--batch-size", "3", "--out", str(tmp_path / "ray"), str(workspace / "targets")]) == 1
    ray_report = capsys.readouterr().err.strip().splitlines()
    assert "Ray, 2 CPU workers (0.5 CPU each)" in ray_report[0]
    assert ray_report[-2] == local_report[0]  # the same skipped target, in the same words
    assert ray_report[-1].split(" -> ")[0] == local_report[1].split(" -> ")[0]  # the same counts
    assert "skipped" in local_report[0] and "t03b.jpg" in local_report[0]
    for name in (COCO_FILE, "insid3-job.json"):  # the same file, byte for byte: the manifests resume each other
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def test_a_worker_killed_mid_job_costs_nothing(cluster, tiny_bundle, workspace, local_masks, tmp_path, monkeypatch,
                                               capsys):
    real, writes, killed = PngOutputs.write, [], []

    def write(self, target, result):
        writes.append(target.stem)
        real(self, target, result)
        if len(writes) == 3:  # mid-job: both actors up, work queued on both
            alive = [actor for actor in segment_workers() if actor["State"] == "ALIVE"]
            assert len(alive) == 2
            os.kill(alive[0]["Pid"], signal.SIGKILL)
            killed.append(alive[0]["Pid"])

    monkeypatch.setattr(PngOutputs, "write", write)
    out = tmp_path / "out"
    assert main(one_concept(tiny_bundle, workspace, out, *RAY)) == 1
    assert killed and len(writes) == TARGETS > 3
    assert sorted(writes) == sorted(local_masks) and len(set(writes)) == len(writes)  # each target once
    masks = masks_of(out)
    assert masks.keys() == local_masks.keys()
    assert all(np.array_equal(masks[stem], local_masks[stem]) for stem in masks)
    assert any(actor["NumRestarts"] >= 1 for actor in segment_workers())  # restarted, not replaced by luck
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-2].startswith("insid3-segment: skipped") and "t03b.jpg" in lines[-2]  # only its own failure
    assert lines[-1].endswith(f"{TARGETS} segmented, 0 already done, 1 failed -> {out}")


def finished(out) -> int:
    """Targets the job logged as done (engine/jobs/outputs/files.py DoneLog), whole lines only."""
    log = out / DONE_FILE
    return log.read_bytes().count(b"\n") if log.is_file() else 0


def test_sigint_to_the_driver_keeps_its_work_and_the_rerun_resumes(cluster, tiny_bundle, workspace, local_masks,
                                                                   tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = one_concept(tiny_bundle, workspace, out, *RAY, "--address", cluster)
    driver = subprocess.Popen([sys.executable, "-m", "insid3.engine.cli.segment", *argv], stderr=subprocess.PIPE,
                              text=True)
    deadline = time.monotonic() + 60
    while finished(out) < 2 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("insid3-segment: interrupted: ") and "resume" in err
    kept = finished(out)  # a mask written but not yet logged when the signal came is redone
    assert 2 <= kept < TARGETS

    here = [arg for arg in argv if arg not in ("--address", cluster)]  # this process's connection, kept open
    real, writes = PngOutputs.write, []
    # Two more masks, fewer when the driver got far before the signal took effect (a loaded
    # machine): at least one target is left for the last run.
    more = min(2, TARGETS - kept - 1)

    def write(self, target, result):  # Ctrl-C in this process, after `more` more masks
        if len(writes) == more:
            raise KeyboardInterrupt
        writes.append(target)
        real(self, target, result)

    monkeypatch.setattr(PngOutputs, "write", write)
    assert main(here) == 130
    assert last_line(capsys).startswith(f"insid3-segment: interrupted: {more} segmented, {kept} already done")
    monkeypatch.undo()
    assert main(here) == 1  # the interrupted pipeline let go of the cluster's CPUs: the actors start again
    done_before = kept + more
    assert last_line(capsys).endswith(f"{TARGETS - done_before} segmented, {done_before} already done, 1 failed -> {out}")
    masks = masks_of(out)
    assert masks.keys() == local_masks.keys()
    assert all(np.array_equal(masks[stem], local_masks[stem]) for stem in masks)
