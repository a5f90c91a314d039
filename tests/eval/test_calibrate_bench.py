"""`insid3 bench calibrate` runs both sides on the same episodes and reports their ratio (the
speed goal itself is measured in benchmarks/, not asserted here)."""

from __future__ import annotations

import json

from insid3.benchmarks.calibrate import CalibrateBenchSettings, run
from insid3.engine.cli.main import main


def test_the_benchmark_reports_both_sides_and_their_ratio(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "calibrate"
    run(CalibrateBenchSettings(bundle=tiny_bundle, examples=2, negatives=1, passes=1, size=(64, 96),
                               backend="onnxruntime", out=out))
    text = capsys.readouterr().out
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["settings"] == {"one": 1, "sweep": 125} and result["episodes"] == 3
    assert result["ratio_loop"] == result["loop_s"]["sweep"] / result["loop_s"]["one"]
    assert f"{result['ratio_loop']:.2f}x" in text and "insid3 bench calibrate --bundle" in text
    assert out.with_suffix(".md").read_text() == text.rstrip("\n") + "\n"


def test_it_is_a_bench_sub_verb(capsys):
    assert main(["bench", "calibrate", "--help"]) == 0
    assert "--negatives" in capsys.readouterr().out
