"""insid3-eval end to end on the tiny random-init bundle and the synthetic layouts: reports,
resume from the episode log, Ctrl-C, one-line errors, --all-folds, the feature cache, and the
per-episode counts against the authors' way driving the same episodes."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import islice

import numpy as np
import pytest
from PIL import Image
from support import eval_layouts as layouts
from support.commands import verb

from insid3.engine.cli import evaluate as cli
from insid3.engine.runtime.segmenter import Segmenter
from insid3.evaluation.datasets import build_benchmark
from insid3.evaluation.features_cache import FeatureCache
from insid3.evaluation.metrics import IoUMeter
from insid3.evaluation.runner import EMPTY_REFERENCE_NOTE, EpisodeRunner
from insid3.evaluation.sampling import episode_rng


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-data")
    for name, writer in layouts.WRITERS.items():
        writer(root / name)
    return root


def evaluate(bundle, data, dataset, out, *extra, fold=None):
    argv = ["--bundle", str(bundle), "--dataset", dataset, "--data-root", str(data / dataset), "--out", str(out),
            "--backend", "onnxruntime", "--no-progress", *extra]
    if fold is not None:
        argv += ["--fold", str(fold)]
    return cli.main(argv)


def read_report(out, name):
    return json.loads((out / f"{name}.json").read_text())


def test_help_shows_the_defaults():
    result = subprocess.run([sys.executable, "-m", "insid3.engine.cli.evaluate", "--help"], capture_output=True, text=True)
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert result.returncode == 0
    assert "(default: 8)" in text and "--all-folds" in text and "(default: square)" in text


def test_a_run_writes_its_reports_and_a_log_that_resumes(tiny_bundle, data, tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate(tiny_bundle, data, "coco", out, "--episodes", "4") == 0
    first = read_report(out, "coco-fold0-1shot")
    assert first["episodes_run"] == 4 and first["timings"]["episodes_computed"] == 4
    assert [e["index"] for e in first["episodes"]] == [0, 1, 2, 3]
    assert {"dataset", "fold", "shots", "miou", "fb_iou", "per_class", "episodes", "settings", "timings"} <= set(first)
    assert first["settings"]["bundle"]["weights"]["kind"] == "random-init"
    assert "NOT a quality figure" in (out / "coco-fold0-1shot.md").read_text()
    assert "mIoU = " in capsys.readouterr().out

    assert evaluate(tiny_bundle, data, "coco", out, "--episodes", "7") == 0  # resumes: 4 logged, 3 more
    resumed = read_report(out, "coco-fold0-1shot")
    assert resumed["timings"]["episodes_resumed"] == 4 and resumed["timings"]["episodes_computed"] == 3
    assert evaluate(tiny_bundle, data, "coco", tmp_path / "fresh", "--episodes", "7") == 0
    fresh = read_report(tmp_path / "fresh", "coco-fold0-1shot")
    assert resumed["episodes"] == fresh["episodes"] and resumed["miou"] == fresh["miou"]
    assert resumed["per_class"] == fresh["per_class"]


def test_a_torn_last_line_is_dropped_on_resume(tiny_bundle, data, tmp_path):
    out = tmp_path / "out"
    assert evaluate(tiny_bundle, data, "isic", out, "--episodes", "3") == 0
    log = out / "isic-1shot.episodes.jsonl"
    with open(log, "a") as handle:
        handle.write('{"index": 3, "class_id"')  # a crash mid-write
    assert evaluate(tiny_bundle, data, "isic", out, "--episodes", "4") == 0
    assert read_report(out, "isic-1shot")["timings"]["episodes_resumed"] == 3
    assert len(log.read_text().splitlines()) == 1 + 4


def test_a_log_of_another_run_is_one_line_unless_overwrite(tiny_bundle, data, tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate(tiny_bundle, data, "isic", out, "--episodes", "2") == 0
    capsys.readouterr()
    assert evaluate(tiny_bundle, data, "isic", out, "--episodes", "2", "--tau", "0.7") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("insid3-eval: error:") and "--overwrite" in error and "tau" in error
    assert evaluate(tiny_bundle, data, "isic", out, "--episodes", "2", "--tau", "0.7", "--overwrite") == 0


def test_ctrl_c_keeps_the_finished_episodes_and_exits_130(tiny_bundle, data, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    update = IoUMeter.update

    def interrupting(self, counts, class_id):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        update(self, counts, class_id)

    monkeypatch.setattr(IoUMeter, "update", interrupting)
    out = tmp_path / "out"
    assert evaluate(tiny_bundle, data, "suim", out, "--episodes", "6") == 130
    assert "run the same command to resume" in capsys.readouterr().err
    assert len((out / "suim-1shot.episodes.jsonl").read_text().splitlines()) == 1 + 3
    monkeypatch.setattr(IoUMeter, "update", update)
    assert evaluate(tiny_bundle, data, "suim", out, "--episodes", "6") == 0
    assert read_report(out, "suim-1shot")["timings"]["episodes_resumed"] == 3


@pytest.mark.parametrize("argv,message", [
    (["--shots", "0"], "--shots must be >= 1"),
    (["--fold", "7"], "has folds 0..3"),
])
def test_bad_arguments_exit_2(tiny_bundle, data, tmp_path, capsys, argv, message):
    exit__code = evaluate(tiny_bundle, data, "coco", tmp_path, *argv)
    assert exit__code == 2 and message in capsys.readouterr().err


def test_a_missing_dataset_is_one_line(tiny_bundle, tmp_path, capsys):
    (tmp_path / "lvis" / "LVIS").mkdir(parents=True)
    assert evaluate(tiny_bundle, tmp_path, "lvis", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lvis_val.pkl is missing" in err[0] and "Traceback" not in err[0]


def test_all_folds_report_the_mean_of_the_fold_mious(tiny_bundle, data, tmp_path):
    root = tmp_path / "data"
    layouts.write_coco(root / "coco")
    out = tmp_path / "out"
    assert cli.main(["--bundle", str(tiny_bundle), "--dataset", "coco", "--data-root", str(root / "coco"),
                     "--out", str(out), "--all-folds", "--episodes", "2", "--backend", "onnxruntime",
                     "--no-progress", "--grid", "original"]) == 0
    combined = read_report(out, "coco-all-folds-1shot")
    assert combined["fold"] == "all" and [run["fold"] for run in combined["runs"]] == [0, 1, 2, 3]
    assert combined["miou"] == pytest.approx(np.mean([run["miou"] for run in combined["runs"]]))
    assert combined["protocol"] == "original" and combined["published"] is None
    # the report tool reads the JSON back into one Table 1
    table = tmp_path / "table.md"
    assert verb("eval", "report")([str(out / "coco-all-folds-1shot.json"), "--markdown", str(table)]) == 0
    assert "mean of folds" in table.read_text() and "| COCO-20i |" in table.read_text()


def test_the_feature_cache_folder_serves_a_later_run(tiny_bundle, data, tmp_path):
    cache = tmp_path / "features"
    assert evaluate(tiny_bundle, data, "permis", tmp_path / "a", "--feature-cache", str(cache)) == 0
    assert evaluate(tiny_bundle, data, "permis", tmp_path / "b", "--feature-cache", str(cache)) == 0
    first, second = read_report(tmp_path / "a", "permis-1shot"), read_report(tmp_path / "b", "permis-1shot")
    assert first["timings"]["images_needed"] == 4 and first["timings"]["images_encoded"] == 3  # frame 0 once
    assert second["timings"]["images_encoded"] == 0 and second["timings"]["feature_cache"]["disk_hits"] == 3
    assert first["episodes"] == second["episodes"]
    assert FeatureCache(folder=next(cache.iterdir())).get("0" * 32) is None


def test_an_empty_reference_mask_is_scored_empty_and_noted(tiny_bundle, tmp_path):
    root = tmp_path / "data"
    layouts.write_coco(root)
    label = root / "COCO2014/annotations/val2014/COCO_val2014_000000000001.png"
    values = np.array(Image.open(label))
    values[values == 73] = 0  # episode 0 is class 72 with image 1 as its reference
    Image.fromarray(values).save(label)
    out = tmp_path / "out"
    assert cli.main(["--bundle", str(tiny_bundle), "--dataset", "coco", "--data-root", str(root), "--out", str(out),
                     "--episodes", "1", "--backend", "onnxruntime", "--no-progress"]) == 0
    result = read_report(out, "coco-fold0-1shot")
    assert result["episodes"][0]["note"] == EMPTY_REFERENCE_NOTE and result["episodes"][0]["intersection"][1] == 0
    assert result["notes"] and "episodes: 1" in result["notes"][0]


CASES = [("coco", 0, 1, 3), ("coco", 0, 5, 2), ("isaid", 1, 2, 3), ("pascal_part", 1, 1, 3), ("paco_part", 0, 2, 2),
         ("lvis", 0, 1, 2), ("permis", None, 1, 2), ("suim", None, 1, 2)]


@pytest.fixture(scope="module")
def both_ways(tiny_bundle):
    from insid3.authors_way import load_model

    return Segmenter.from_bundle(tiny_bundle, backend="onnxruntime"), load_model(tiny_bundle)


@pytest.mark.parametrize("dataset,fold,shots,n", CASES, ids=[f"{c[0]}-{c[2]}shot" for c in CASES])
def test_counts_equal_the_authors_way_on_the_same_episodes(both_ways, data, dataset, fold, shots, n):
    from insid3.evaluation.authors_side import run_authors_way

    segmenter, model = both_ways
    benchmark = build_benchmark(dataset, str(data / dataset), fold, shots)
    runner = EpisodeRunner(segmenter, benchmark, FeatureCache(), batch_size=3)
    ours = list(runner.run(islice(benchmark.episodes(episode_rng()), n)))
    theirs = list(run_authors_way(model, benchmark, islice(benchmark.episodes(episode_rng()), n)))
    assert [r.episode for r in ours] == [r.episode for r in theirs]
    assert [r.counts for r in ours] == [r.counts for r in theirs]
    assert runner.stats.images_encoded <= runner.stats.images_needed
