"""insid3-eval --ray --all-folds on a local Ray instance it starts itself (two CPU actors), on the
synthetic COCO-20i layout: the folds' episodes are drawn by the driver and scored on the pool,
the logs and numbers equal the local run's exactly, and a log begun locally resumes on Ray; with
RAY_ADDRESS=local and more actors than cores, the command finishes (its instance sized for them).

Starts a local Ray instance (about 10 s); deselect with `-m "not ray"`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import eval_layouts as layouts

from insid3.engine.cli import evaluate as cli

pytest.importorskip("ray.data")
pytestmark = pytest.mark.ray
FOLDS = 4


def evaluate(bundle, data, out, episodes: int, *extra: str) -> int:
    return cli.main(["--bundle", str(bundle), "--dataset", "coco", "--data-root", str(data), "--out", str(out),
                     "--backend", "onnxruntime", "--no-progress", "--all-folds", "--episodes", str(episodes), *extra])


def test_all_folds_on_ray_equal_the_local_run_and_resume_its_log(tiny_bundle, tmp_path, capsys):
    data = tmp_path / "data"
    layouts.write_coco(data, images=3)
    assert evaluate(tiny_bundle, data, tmp_path / "local", 6) == 0
    assert evaluate(tiny_bundle, data, tmp_path / "mixed", 2) == 0  # begun here...
    capsys.readouterr()
    assert evaluate(tiny_bundle, data, tmp_path / "mixed", 6, "--ray", "--workers", "2", "--cpus-per-worker", "0.5",
                    "--batch-size", "2") == 0  # ...finished on Ray: 4 more episodes of every fold, side by side
    assert "Ray, 2 CPU workers (0.5 CPU each)" in capsys.readouterr().err

    name = "coco-all-folds-1shot"
    local = json.loads((tmp_path / "local" / f"{name}.json").read_text())
    mixed = json.loads((tmp_path / "mixed" / f"{name}.json").read_text())
    assert (mixed["miou"], mixed["fb_iou"], mixed["fold_miou"]) == (local["miou"], local["fb_iou"], local["fold_miou"])
    assert len(mixed["runs"]) == FOLDS
    for ours, theirs in zip(mixed["runs"], local["runs"]):
        assert ours["timings"]["episodes_resumed"] == 2 and ours["timings"]["episodes_computed"] == 4
        assert ours["timings"]["images_needed"] == 8  # 4 episodes, a target and a reference each
        assert ours["settings"]["ray"] == {"workers": 2, "gpus_per_worker": 0.0, "cpus_per_worker": 0.5}
        for key in ("fold", "miou", "fb_iou", "per_class", "episodes"):
            assert ours[key] == theirs[key], key
        assert any(episode["union"][1] > 0 for episode in ours["episodes"])  # counts that can differ
    for fold in range(FOLDS):  # the logs, byte for byte: either run resumes the other's
        log = f"coco-fold{fold}-1shot.episodes.jsonl"
        assert (tmp_path / "mixed" / log).read_bytes() == (tmp_path / "local" / log).read_bytes()


def test_a_fresh_local_instance_with_more_actors_than_cores_finishes(tiny_bundle, tmp_path, capsys):
    """RAY_ADDRESS=local, Ray's way to ask for a fresh local instance: once, its CPUs all went to
    the actors, and a job waiting for more could hang. Run as the console command, with a deadline."""
    data = tmp_path / "data"
    layouts.write_coco(data, images=3)
    one_fold = ("--fold", "0", "--episodes", "3")
    assert cli.main(["--bundle", str(tiny_bundle), "--dataset", "coco", "--data-root", str(data), "--out",
                     str(tmp_path / "local"), "--backend", "onnxruntime", "--no-progress", *one_fold]) == 0
    capsys.readouterr()
    workers = str((os.cpu_count() or 1) + 1)
    done = subprocess.run(
        [sys.executable, "-m", "insid3.engine.cli.main", "eval", "--bundle", str(tiny_bundle), "--dataset", "coco",
         "--data-root", str(data), "--out", str(tmp_path / "ray"), "--backend", "onnxruntime", "--no-progress",
         *one_fold, "--ray", "--workers", workers, "--batch-size", "2"],
        env={**os.environ, "RAY_ADDRESS": "local"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Ray, {workers} CPU workers (1 CPU each)" in done.stderr
    # the pool's lines speak with the verb's name, as every other line of the command does
    assert all(line.startswith("insid3 eval: ") for line in done.stderr.splitlines() if "CPU workers" in line)
    log = "coco-fold0-1shot.episodes.jsonl"
    assert (tmp_path / "ray" / log).read_bytes() == (tmp_path / "local" / log).read_bytes()
