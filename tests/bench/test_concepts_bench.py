"""python -m insid3.benchmarks.concepts on the tiny bundle: the report, its numbers, bad flags."""

import json

import pytest

from insid3.benchmarks.concepts import main


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
    with pytest.raises(SystemExit) as exit_info:
        main(["--bundle", str(tiny_bundle), "--repeats", "2"])
    assert exit_info.value.code == 2 and "--repeats must be >= 5" in capsys.readouterr().err
    assert main(["--bundle", "/no/such/bundle"]) == 2
    assert capsys.readouterr().err.startswith("insid3.benchmarks.concepts: error: bundle")
