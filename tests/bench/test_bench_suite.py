"""insid3.benchmarks.suite: the FLOP table and the summary row (no bundle exported here)."""

import pytest
from support.commands import verb

from insid3.benchmarks import suite as suite_module
from insid3.benchmarks.flops import floor_ms, flops_for_arch


@pytest.fixture(scope="module")
def suite():
    return suite_module


def test_flops_table_lists_every_config_with_floors(suite):
    table = suite.flops_table(["small", "large"], [768, 1024], "NVIDIA H100 PCIe").splitlines()
    assert len(table) == 1 + 4
    rows = {tuple(line.split()[:2]): line.split() for line in table[1:]}
    large = rows[("large", "1024")]
    flops = flops_for_arch("large", 1024)
    assert float(large[2]) == pytest.approx(flops.gflops, abs=0.05)
    assert large[3] == f"{floor_ms(flops.total, 756.0):.3f}"  # this GPU's floor, in ms
    assert "peak unknown" in suite.flops_table(["small"], [768], None)


def test_summary_row_reads_a_report(suite):
    report = {
        "config": {"backend": "openvino", "precision": "bf16"},
        "ours": {"fps": 0.7, "stages_ms": {"backbone": 1151.6}, "peak_memory_mb": 451.8},
        "reference": {"fps": 0.12, "peak_memory_mb": 668.6},
        "speedup": 0.7 / 0.12, "mask_mean_iou_vs_reference": 1.0,
        "roofline": {"backbone_gflops_per_image": 197.7, "floor_ms": None, "fraction_of_peak": None},
    }
    cells = [c.strip() for c in suite.summary_row("small-768", report).strip("|").split("|")]
    assert cells == ["small-768", "openvino", "bf16", "197.7", "1151.6", "-", "-", "0.70", "0.12", "5.83x",
                     "1.0000", "452", "669"]
    assert len(cells) == suite.SUMMARY_HEADER.splitlines()[0].count("|") - 1


def test_flops_only_exits_cleanly(suite, capsys):
    assert verb("bench", "suite")(["--flops-only", "--sizes", "small", "--resolutions", "768"]) == 0
    assert "197.7" in capsys.readouterr().out
