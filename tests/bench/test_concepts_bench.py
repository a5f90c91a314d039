"""insid3 bench concepts on the tiny bundle: the report, its numbers, bad flags."""

import json

import pytest

from insid3.engine.cli.main import run_command


def main(argv: list[str]) -> int:
    return run_command("insid3 bench", "bench", ["concepts", *argv])


def test_the_benchmark_reports_the_ratio_and_the_per_concept_stages(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "numbers.json"
    assert main(["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--concepts", "3", "--repeats", "5",
                 "--size", "64", "80", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    numbers = json.loads(out.read_text())
    assert numbers["concepts"] == 3 and numbers["ratio"] == pytest.approx(numbers["many_ms"] / numbers["one_ms"])
    assert numbers["separate_ms"] > 0 and set(numbers["per_concept_stages_ms"]) == {"matching", "aggregation",
                                                                                    "upsample", "refine"}
    assert f"| segment_concepts(target, 3 references) | {numbers['many_ms']:.1f} | {numbers['ratio']:.2f}x |" in text
    assert "Per concept on top of the shared target side" in text and "| clustering |" in text


def test_too_few_repeats_is_a_usage_error(tiny_bundle, capsys):
    assert main(["--bundle", str(tiny_bundle), "--repeats", "2"]) == 2  # one line through the runner, no SystemExit
    assert "--repeats must be >= 5" in capsys.readouterr().err
    assert main(["--bundle", "/no/such/bundle"]) == 2
    assert capsys.readouterr().err.startswith("insid3 bench concepts: error: bundle")
