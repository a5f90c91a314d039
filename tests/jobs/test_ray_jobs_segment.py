"""insid3-segment --ray on a local Ray instance with two CPU actors: outputs equal the local
command's, a worker killed mid-job costs nothing (every target written once), and a driver
interrupted (SIGINT to a process joined by --address, Ctrl-C in this one) resumes from what it wrote;
a pool the cluster has no room for stops in bounded time, and a fresh local instance
(RAY_ADDRESS=local) with more actors than cores finishes.

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
from support.commands import last_line
from support.scenes import save_example

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
        save_example(root, name, seed, concept)
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


def segment_workers() -> list[dict]:
    """The pool's actors as the cluster knows them (pid, state, restarts)."""
    return [actor for actor in ray._private.state.actors().values()
            if "SegmentWorker" in actor["ActorClassName"]]


def restarted(actor_id: str) -> bool:
    return any(actor["ActorID"] == actor_id and actor["NumRestarts"] >= 1 for actor in segment_workers())


def retired(actor_id: str) -> bool:
    """Let go by the pool for good (scaled down once the inputs ran out), not restarting."""
    return any(actor["ActorID"] == actor_id and actor["State"] == "DEAD" for actor in segment_workers())


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
    real, writes, killed, outcome = PngOutputs.write, [], [], []

    def write(self, target, result):
        writes.append(target.stem)
        real(self, target, result)
        if len(writes) == 3:  # mid-job, once both actors are up (one may start later than the first masks)
            deadline, alive = time.monotonic() + 120, []
            while len(alive) < 2 and time.monotonic() < deadline:
                alive = [actor for actor in segment_workers()
                         if actor["State"] == "ALIVE" and actor["ActorID"] not in earlier]
                time.sleep(0.1)
            assert len(alive) == 2, [(actor["ActorID"] in earlier, actor["State"]) for actor in segment_workers()]
            os.kill(alive[0]["Pid"], signal.SIGKILL)
            killed.append(alive[0]["ActorID"])
            # Held until Ray has restarted it, or retired it: a victim with no batch in flight (the
            # other actor may hold every input left) is let go by the pool ("consumed all inputs")
            # rather than restarted, and then there is nothing to retry.
            deadline = time.monotonic() + 120
            while not (restarted(killed[0]) or retired(killed[0])) and time.monotonic() < deadline:
                time.sleep(0.1)
            outcome.append("restarted" if restarted(killed[0]) else "retired" if retired(killed[0]) else "neither")

    monkeypatch.setattr(PngOutputs, "write", write)
    out = tmp_path / "out"
    earlier = {actor["ActorID"] for actor in segment_workers()}  # an earlier job's pool, maybe not yet gone
    assert main(one_concept(tiny_bundle, workspace, out, *RAY)) == 1
    assert killed and len(writes) == TARGETS > 3
    assert sorted(writes) == sorted(local_masks) and len(set(writes)) == len(writes)  # each target once
    masks = masks_of(out)
    assert masks.keys() == local_masks.keys()
    assert all(np.array_equal(masks[stem], local_masks[stem]) for stem in masks)
    # While the job ran: restarted (cluster.FAULT_TOLERANCE: its batches retried, every target above
    # written once), or retired by the pool with nothing in flight; never left half-dead.
    assert outcome in (["restarted"], ["retired"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-2].startswith("insid3-segment: skipped") and "t03b.jpg" in lines[-2]  # only its own failure
    assert lines[-1].endswith(f"{TARGETS} segmented, 0 already done, 1 failed -> {out}")


def finished(out) -> int:
    """Targets the job logged as done (engine/jobs/outputs/files.py DoneLog), whole lines only."""
    log = out / DONE_FILE
    return log.read_bytes().count(b"\n") if log.is_file() else 0


# The driver, run as `python -m insid3.engine.cli.main segment ...` would run it, held before its
# third mask until the test's SIGINT: the signal then always lands mid-job. (Signalled when two
# masks were logged, a free-running driver could write the other eight, prefetched by the
# pipeline, in ~50 ms, and a loaded machine could deschedule the test longer than that: the job
# finished first and exited 1.) `held` is touched when the driver waits: the test's cue.
HELD_DRIVER = """
import runpy, sys, time
from pathlib import Path
from insid3.engine.jobs.outputs.masks import PngOutputs

held, real, written = Path(sys.argv.pop(1)), PngOutputs.write, []

def write(self, target, result):
    if len(written) == 2:
        held.touch()
        while True:
            time.sleep(0.01)
    real(self, target, result)
    written.append(target)

PngOutputs.write = write
runpy.run_module("insid3.engine.cli.main", run_name="__main__", alter_sys=True)
"""


def test_sigint_to_the_driver_keeps_its_work_and_the_rerun_resumes(cluster, tiny_bundle, workspace, local_masks,
                                                                   tmp_path, monkeypatch, capsys):
    out, held = tmp_path / "out", tmp_path / "held"
    argv = one_concept(tiny_bundle, workspace, out, *RAY, "--address", cluster)
    driver = subprocess.Popen([sys.executable, "-c", HELD_DRIVER, str(held), "segment", *argv],
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # the cue, not a guess of how long the set-up takes
    while not held.exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not held.exists():
        driver.kill()
        pytest.fail(f"the driver never reached its third mask: {driver.communicate()[1][-2000:]}")
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("insid3 segment: interrupted: 2 segmented, 0 already done, kept in")
    assert finished(out) == 2

    here = [arg for arg in argv if arg not in ("--address", cluster)]  # this process's connection, kept open
    real, writes = PngOutputs.write, []

    def write(self, target, result):  # Ctrl-C in this process, after two more masks
        if len(writes) == 2:
            raise KeyboardInterrupt
        writes.append(target)
        real(self, target, result)

    monkeypatch.setattr(PngOutputs, "write", write)
    assert main(here) == 130
    assert last_line(capsys).startswith("insid3-segment: interrupted: 2 segmented, 2 already done")
    monkeypatch.undo()
    assert main(here) == 1  # the interrupted pipeline let go of the cluster's CPUs: the actors start again
    assert last_line(capsys).endswith(f"{TARGETS - 4} segmented, 4 already done, 1 failed -> {out}")
    masks = masks_of(out)
    assert masks.keys() == local_masks.keys()
    assert all(np.array_equal(masks[stem], local_masks[stem]) for stem in masks)


def test_a_pool_the_cluster_has_no_room_for_is_waited_for_then_stops_in_one_line(cluster, tiny_bundle, workspace,
                                                                                tmp_path, capsys):
    """4 one-CPU actors and a reading task on 4 CPUs: the job would wait for its first input
    forever. A cluster joined may grow (an autoscaler): the job says so, waits --cluster-timeout,
    and stops with one line, having started no actor."""
    out = tmp_path / "out"
    started = time.monotonic()
    assert main(one_concept(tiny_bundle, workspace, out, "--ray", "--workers", "4", "--cluster-timeout", "4")) == 2
    assert time.monotonic() - started < 60
    lines = capsys.readouterr().err.strip().splitlines()
    assert "waiting up to 4 s (--cluster-timeout) for room for 4 CPU workers (1 CPU each) and 1 CPU for reading" in lines[-2]
    assert lines[-1] == ("insid3-segment: error: the cluster had no room for 4 CPU workers (1 CPU each) and 1 CPU for "
                         "reading within 4 s (--cluster-timeout): add nodes, or ask for fewer --workers or "
                         "--cpus-per-worker")
    assert finished(out) == 0


def test_a_fresh_local_instance_with_more_actors_than_cores_finishes(tiny_bundle, workspace, local_masks, tmp_path):
    """RAY_ADDRESS=local (Ray's way to ask for a fresh local instance): the command starts one
    sized for its pool and a reading task, however few cores this machine has, and finishes."""
    out = tmp_path / "out"
    workers = str((os.cpu_count() or 1) + 1)
    argv = one_concept(tiny_bundle, workspace, out, "--ray", "--workers", workers, "--batch-size", "4")
    env = {**os.environ, "RAY_ADDRESS": "local"}
    done = subprocess.run([sys.executable, "-m", "insid3.engine.cli.main", "segment", *argv], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]  # the broken target, nothing else
    assert f"Ray, {workers} CPU workers (1 CPU each)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(f"{TARGETS} segmented, 0 already done, 1 failed -> {out}")
    masks = masks_of(out)
    assert masks.keys() == local_masks.keys()
    assert all(np.array_equal(masks[stem], local_masks[stem]) for stem in masks)
