"""The GPU acceptance run's CPU side: arguments, the no-GPU stop, the budget, phase isolation
(each phase a process with its limit), the report (JSON + markdown, read back), the tests verdict."""

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from insid3 import gpu_stack
from insid3.benchmarks import gpu_acceptance
from insid3.benchmarks.gpu_acceptance import PhaseSpec, run_phases
from insid3.benchmarks.gpu_parity import feature_agreement, within
from insid3.benchmarks.gpu_phases import junit_summary, junit_verdict
from insid3.benchmarks.gpu_report import Budget, PhaseContext, PhaseResult, Report, read_report, wait_for_bundle


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "insid3.benchmarks.gpu_acceptance", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(gpu_stack.driver_cuda_version() is not None, reason="a CUDA driver is installed here")
def test_without_a_gpu_it_stops_at_once_with_one_line(tmp_path):
    started = time.monotonic()
    run = _cli("--out", str(tmp_path / "out"))
    assert run.returncode == gpu_acceptance.NO_GPU_EXIT and run.stdout == ""
    assert run.stderr.splitlines() == [
        "gpu_acceptance: no CUDA driver on this machine (libcuda not found): the GPU acceptance run needs an NVIDIA GPU"
    ]
    assert time.monotonic() - started < 20 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "line"), [
    (("--phases", "tests,bogus"), "gpu_acceptance: --phases: unknown bogus; choose from export, rope, tests, parity, "
                                  "side_by_side"),
    (("--budget-s", "0"), "gpu_acceptance: the budget must be > 0 s, got 0.0"),
])
def test_bad_arguments_are_one_line_before_any_gpu_check(tmp_path, args, line):
    run = _cli("--out", str(tmp_path), *args)
    assert run.returncode == 2 and run.stderr.splitlines() == [line]


def test_help_shows_the_defaults():
    run = _cli("--help")
    assert run.returncode == 0
    assert "(default: 450.0)" in run.stdout and "export,rope,tests,parity,side_by_side" in run.stdout


def test_the_budget_cuts_each_phase_to_what_is_left():
    now = [100.0]
    budget = Budget(60, clock=lambda: now[0])
    assert budget.limit_for(45) == 45
    now[0] += 40
    assert budget.remaining() == 20 and budget.limit_for(45) == 20 and budget.limit_for(45, reserve_s=5) == 15
    now[0] += 30
    assert budget.remaining() == 0 and budget.limit_for(45) == 0
    with pytest.raises(ValueError, match="the budget must be > 0 s"):
        Budget(-1)


# Fake phases: each a real process, as the run starts them, writing its result file (or not).
FAKES = {
    "ok": "write('passed', 'all good')",
    "crash": "raise SystemExit('crashed: CUDA error 700')",
    "slow": "write('passed', 'first half done'); time.sleep(60)",
    "background": "time.sleep(1.5); write('passed', 'exported')",
    "failing": "write('failed', '2 failed')",
}


def _fake_command(spec, result_file, limit_s):
    code = textwrap.dedent(f"""
        import json, time
        def write(status, summary):
            open({str(result_file)!r}, 'w').write(json.dumps(
                {{'status': status, 'summary': summary, 'details': {{'limit': {limit_s}}}, 'markdown': ['- ' + summary]}}))
        {FAKES[spec.name]}
    """)
    return [sys.executable, "-c", code]


def test_phases_are_isolated_limited_and_reported_as_they_end(tmp_path):
    specs = (PhaseSpec("background", limit_s=30, background=True), PhaseSpec("ok", limit_s=30),
             PhaseSpec("crash", limit_s=30), PhaseSpec("slow", limit_s=2, min_s=1), PhaseSpec("failing", limit_s=30),
             PhaseSpec("ok", limit_s=30, min_s=1000))
    heard = []
    results = run_phases(specs, Budget(100), command=_fake_command, work=tmp_path, on_result=heard.append, poll_s=0.05)
    statuses = [(r.name, r.status) for r in heard]
    assert statuses[:3] == [("ok", "passed"), ("crash", "error"), ("background", "passed")]
    assert statuses[3:] == [("slow", "timed out"), ("failing", "failed"), ("ok", "skipped")]
    assert results["crash"].summary == "exit status 1: crashed: CUDA error 700"
    assert results["slow"].summary == "stopped at its limit of 2 s; partial: first half done"
    assert results["slow"].seconds < 10 and results["slow"].markdown == ("- first half done",)
    assert "it needs 1000 s to start" in results["ok"].summary


def test_the_budget_stops_a_background_phase_too(tmp_path):
    specs = (PhaseSpec("slow", limit_s=60, background=True),)
    results = run_phases(specs, Budget(1.5), command=_fake_command, work=tmp_path, on_result=lambda r: None,
                         poll_s=0.05)
    assert results["slow"].status == "timed out"


def test_the_report_is_written_whole_and_read_back(tmp_path):
    report = Report(budget_s=450, environment={"gpus": "NVIDIA H200, 580.1, 143771 MiB"})
    report.phases["tests"] = PhaseResult("tests", "passed", 12.5, 150, "10 passed | 0 failed", {"passed": 10},
                                         ("- 10 passed",))
    report.phases["parity"] = PhaseResult("parity", "timed out", 75.0, 75, "stopped")
    report.outcome, report.elapsed_s = "failed", 88.0
    report.write(tmp_path)
    back = read_report(tmp_path)
    assert back.phases == report.phases and back.outcome == "failed" and back.environment == report.environment
    markdown = (tmp_path / "acceptance.md").read_text()
    assert "| tests | passed | 12.5 | 150 | 10 passed / 0 failed |" in markdown
    assert "## tests\n\n- 10 passed" in markdown and "failed, 88 s of a 450 s budget" in markdown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acceptance.json", "acceptance.md"]
    with pytest.raises(ValueError, match="status 'fine' is not one of"):
        PhaseResult("x", "fine", 0, 0, "")


def test_a_phase_writes_as_it_goes_and_waits_for_its_bundle(tmp_path):
    ctx = PhaseContext(work=tmp_path, out=tmp_path, result_file=tmp_path / "r.json", deadline=time.monotonic() + 1.5)
    ctx.write("passed", "half", {"a": 1}, ["- a"])
    assert json.loads((tmp_path / "r.json").read_text()) == {
        "status": "passed", "summary": "half", "details": {"a": 1}, "markdown": ["- a"]}
    assert wait_for_bundle(ctx, "small-768", reserve_s=0.5) is None  # never exported: gives up in time
    folder = tmp_path / "bundles" / "small-768"
    folder.mkdir(parents=True)
    (folder / "insid3.json").write_text("{}")
    assert wait_for_bundle(ctx, "small-768", reserve_s=0.0) == folder


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_kernels_linkage" name="test_cuda_kernels_equal_twins[cupy]" time="0.5"/>
<testcase classname="tests.test_torch_cuda_backend" name="test_without_cupy_it_says_which_extra" time="0.1"/>
<testcase classname="tests.test_kernels_pruned" name="test_pruned[cupy]" time="0.1">
  <failure message="AssertionError: masks differ&#10;more">trace</failure></testcase>
<testcase classname="tests.test_tensorrt_runner" name="test_engine" time="0.0">
  <skipped type="pytest.skip" message="tests/runtime/test_tensorrt_runner.py:131: tensorrt is not installed"/></testcase>
<testcase classname="tests.test_export_tensorrt" name="test_build" time="0.0">
  <skipped type="pytest.skip" message="tests/export/test_export_tensorrt.py:73: tensorrt is not installed"/></testcase>
</testsuite></testsuites>"""


def test_the_tests_phase_reads_pytests_junit_report():
    summary = junit_summary(JUNIT)
    assert (summary["tests"], summary["passed"], summary["failed"], summary["skipped"]) == (5, 2, 1, 2)
    assert summary["cupy_passed"] == 1  # a CuPy variant, not a test whose name says cupy
    assert summary["failures"] == ["tests.test_kernels_pruned::test_pruned[cupy]: AssertionError: masks differ"]
    assert summary["skip_reasons"] == {"tensorrt is not installed": 2}
    assert junit_verdict(summary) == ("failed", "2 passed, 1 failed, 2 skipped (1 CuPy variants passed)")
    assert junit_verdict({**summary, "failed": 0}) == ("passed", "2 passed, 0 failed, 2 skipped (1 CuPy variants passed)")
    assert junit_verdict({**summary, "failed": 0, "cupy_passed": 0})[0] == "failed"


def test_parity_marks():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((2, 5, 8)).astype(np.float32)
    features /= np.linalg.norm(features, axis=-1, keepdims=True)
    agreement = feature_agreement(features, features)
    assert agreement["min_cosine"] == pytest.approx(1.0) and agreement["max_abs"] == 0.0
    assert within("fp32", agreement, mask_iou=1.0) and not within("fp32", agreement, mask_iou=0.99)
    noisy = features + np.float32(2e-4)
    assert not within("fp32", feature_agreement(noisy, features), mask_iou=1.0)  # max abs 2e-4 > 1e-4
    assert within("bf16", feature_agreement(noisy, features), mask_iou=0.99)
