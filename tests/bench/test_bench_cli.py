"""insid3-bench end to end on the tiny bundle: the JSON contract, the reference mode, the outputs."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from insid3.benchmarks.plot import read_plotted
from insid3.benchmarks.report import PAPER_FPS, parse_markdown_table
from insid3.engine.cli.bench import main
from insid3.engine.runtime.timing import STAGES

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("onnxruntime")


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def compared(tiny_bundle, tmp_path_factory):
    """One --compare-reference run with every output: the tests below read it."""
    folder = tmp_path_factory.mktemp("bench")
    paths = {"json": folder / "report.json", "markdown": folder / "report.md", "plot": folder / "stages.png"}
    code, out, err = run_cli([
        "--bundle", tiny_bundle, "--backend", "onnxruntime", "--compare-reference", "--iters", 2,
        "--warmup", 1, "--targets", 2, "--batch-size", 1, 2, "--threads", 1,
        "--json", paths["json"], "--markdown", paths["markdown"], "--plot", paths["plot"],
    ])
    assert code == 0, err
    return json.loads(paths["json"].read_text()), out, paths


def _positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_json_contract_keys_and_types(compared):
    report, _, _ = compared
    assert {"environment", "config", "ours", "reference", "speedup", "mask_mean_iou_vs_reference",
            "paper_fps"} <= set(report)
    env = report["environment"]
    assert {"cpu", "gpu", "driver", "cuda", "libraries", "python"} <= set(env)
    assert env["cpu"] and "numpy" in env["libraries"] and "onnxruntime" in env["libraries"]
    assert isinstance(env["cpu_features"], list) and len(env["load_average"]["end"]) == 3
    config = report["config"]
    assert config["resolution"] == 224 and config["backend"] == "onnxruntime"
    assert config["precision"] == "fp32" and config["shots"] == 1 and isinstance(config["size"], str)
    for side in (report["ours"], report["reference"]):
        assert _positive(side["fps"]) and _positive(side["peak_memory_mb"])
        assert set(side["latency_ms"]) >= {"p50", "p90", "p99"}
        assert all(_positive(v) for v in side["latency_ms"].values())
        assert set(side["stages_ms"]) == set(STAGES)
        assert all(isinstance(v, float) and v >= 0 for v in side["stages_ms"].values())
    ours = report["ours"]
    assert _positive(ours["reference_encode_ms"]) and _positive(ours["cold_start_ms"])
    assert set(ours["by_batch_size"]) == {"1", "2"}
    assert all(_positive(entry["fps"]) for entry in ours["by_batch_size"].values())
    assert ours["mask_mean_iou_vs_fp32"] is None  # fp32 run: nothing to compare against
    assert report["paper_fps"] == PAPER_FPS == 3.31


def test_numbers_are_consistent(compared):
    report, _, _ = compared
    for side in (report["ours"], report["reference"]):
        latency, per_pass = side["latency_ms"], side["fps_per_pass"]
        assert len(per_pass) == 2  # --iters 2
        assert min(per_pass) <= side["fps"] <= max(per_pass)
        # Equal-size passes: 1000 / mean latency is the harmonic mean of the per-pass fps.
        assert min(per_pass) * 0.999 <= 1000 / latency["mean"] <= max(per_pass) * 1.001
        assert latency["p50"] <= latency["p90"] <= latency["p99"]
        stage_sum = sum(side["stages_ms"].values())
        assert 0.5 * latency["mean"] <= stage_sum <= latency["mean"] * 1.001
    ours, reference = report["ours"], report["reference"]
    assert report["speedup"] == pytest.approx(ours["fps"] / reference["fps"])
    assert ours["cold_start_ms"] > ours["latency_ms"]["p50"]  # loading the bundle is part of it


def test_reference_mode_masks_compared(compared):
    report, out, _ = compared
    iou = report["mask_mean_iou_vs_reference"]
    assert isinstance(iou, float) and 0.0 <= iou <= 1.0
    assert report["reference"]["stages_ms"]["clustering"] > 0
    assert "speed-up" in out and "mask mean IoU vs authors' way" in out


def test_paper_figure_is_labelled_not_measured(compared):
    _, out, paths = compared
    for text in (out, paths["markdown"].read_text()):
        line = next(line for line in text.splitlines() if "3.31" in line)
        assert "authors' figure" in line and "not measured here" in line


def test_markdown_holds_the_measured_numbers(compared):
    report, _, paths = compared
    rows = parse_markdown_table(paths["markdown"].read_text())
    for stage in STAGES:
        ours, reference = rows[f"{stage} (ms)"]
        assert float(ours) == pytest.approx(report["ours"]["stages_ms"][stage], abs=0.006)
        assert float(reference) == pytest.approx(report["reference"]["stages_ms"][stage], abs=0.006)
    ours, reference = rows["throughput (targets/s)"]
    assert float(ours) == pytest.approx(report["ours"]["fps"], abs=0.006)
    assert float(reference) == pytest.approx(report["reference"]["fps"], abs=0.006)
    assert float(rows["latency p99 (ms)"][0]) == pytest.approx(report["ours"]["latency_ms"]["p99"], abs=0.006)
    assert float(rows["peak memory (MB)"][1]) == pytest.approx(report["reference"]["peak_memory_mb"], abs=0.006)
    assert float(rows["batch 2 (targets/s)"][0]) == pytest.approx(report["ours"]["by_batch_size"]["2"]["fps"],
                                                                   abs=0.006)


def test_plot_holds_the_measured_numbers(compared):
    from PIL import Image

    report, _, paths = compared
    with Image.open(paths["plot"]) as image:
        assert image.format == "PNG" and image.width > 300
    plotted = read_plotted(paths["plot"])
    assert plotted["ours"] == report["ours"]["stages_ms"]
    assert plotted["authors' way"] == report["reference"]["stages_ms"]


def test_without_reference_the_reference_is_null(tiny_bundle, tmp_path):
    path = tmp_path / "r.json"
    code, out, err = run_cli(["--bundle", tiny_bundle, "--backend", "onnxruntime", "--iters", 1, "--warmup", 0,
                              "--targets", 1, "--json", path])
    assert code == 0, err
    report = json.loads(path.read_text())
    assert report["reference"] is None and report["speedup"] is None
    assert report["mask_mean_iou_vs_reference"] is None and _positive(report["ours"]["fps"])


def test_images_folder_is_used(tiny_bundle, tmp_path):
    from PIL import Image

    from insid3.engine.jobs.scenes import draw_scene

    folder = tmp_path / "images"
    folder.mkdir()
    reference, target = draw_scene(1, (64, 80)), draw_scene(2, (64, 80))
    Image.fromarray(reference.image).save(folder / "ref.png")
    Image.fromarray(reference.mask.astype(np.uint8) * 255).save(folder / "ref.mask.png")
    Image.fromarray(target.image).save(folder / "target.jpg")
    path = tmp_path / "r.json"
    code, _, err = run_cli(["--bundle", tiny_bundle, "--backend", "onnxruntime", "--images", folder,
                            "--iters", 1, "--warmup", 0, "--json", path])
    assert code == 0, err
    config = json.loads(path.read_text())["config"]
    assert config["targets"] == 1 and "1 reference(s), 1 target(s)" in config["inputs"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bundle", "/nonexistent/bundle"], "does not exist"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--iters", "0"], "--iters must be >= 1"),
        (["--images", "/nonexistent/images"], "is not a folder"),
        (["--plot", "chart.jpg"], "PNG"),
        (["--backend", "nosuch"], "unknown backend"),
    ],
)
def test_bad_input_is_one_line(tiny_bundle, argv, message):
    if "--bundle" not in argv:
        argv = ["--bundle", str(tiny_bundle), "--iters", "1", "--warmup", "0", "--targets", "1"] + argv
    code, out, err = run_cli(argv)
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.parametrize("argv", [["--batch-size", "abc"], []])
def test_usage_mistakes_are_one_line(tiny_bundle, argv, capsys):
    exit_info_code = main((["--bundle", str(tiny_bundle)] if argv else []) + argv)
    err = capsys.readouterr().err
    assert exit_info_code == 2 and len(err.strip().splitlines()) == 1 and "error" in err


def test_multi_shot_reference_mode(tiny_bundle, tmp_path):
    path = tmp_path / "r.json"
    code, _, err = run_cli(["--bundle", tiny_bundle, "--backend", "onnxruntime", "--shots", 3, "--targets", 1,
                            "--iters", 1, "--warmup", 0, "--compare-reference", "--json", path])
    assert code == 0, err
    report = json.loads(path.read_text())
    assert report["config"]["shots"] == 3 and 0.0 <= report["mask_mean_iou_vs_reference"] <= 1.0


def test_console_script_bad_bundle_no_traceback(tmp_path):
    script = Path(sys.executable).with_name("insid3-bench")
    result = subprocess.run([str(script), "--bundle", str(tmp_path / "missing")], capture_output=True, text=True)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ctrl_c_is_one_line_and_leaves_no_process(tiny_bundle, tmp_path):
    """SIGINT to the whole process group (as a terminal sends it) while a side is running."""
    import os
    import signal
    import time

    report = tmp_path / "report.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "insid3.engine.cli.bench", "--bundle", str(tiny_bundle), "--backend", "onnxruntime",
         "--compare-reference", "--iters", "50", "--targets", "2", "--json", str(report)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    lines = []
    for line in process.stderr:  # progress lines: the run says what it is doing
        lines.append(line)
        if "timed pass 1/50" in line:
            break
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130
    assert any("ours: cold start" in line for line in lines)
    assert rest.strip().splitlines()[-1] == "insid3-bench: interrupted: no report was written"
    assert "Traceback" not in rest and not report.exists()
    deadline = time.monotonic() + 20  # the sides' processes (and multiprocessing's tracker) follow
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("processes of the interrupted benchmark are still running 20 s later")
