"""The GPU acceptance run's CPU side: arguments, the no-GPU stop, the budgets against the device
lease, phase isolation (each phase a process with its limit), the preflight gate, waiting on the
export's exit, the derived GPU test files, per-configuration outcomes, the report (JSON +
markdown, read back), the tests verdict, and the whole run simulated on the CPU."""

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from insid3 import gpu_stack
from insid3.benchmarks import gpu_acceptance, gpu_parity, gpu_side_by_side
from insid3.benchmarks.gpu_acceptance import PHASES, PhaseSpec, run_outcome, run_phases
from insid3.benchmarks.gpu_parity import feature_agreement, within
from insid3.benchmarks.gpu_phases import (
    gpu_test_files,
    group_test_files,
    has_gpu_variant,
    import_modules,
    junit_summary,
    junit_verdict,
    merged_junit,
    missing_line,
)
from insid3.benchmarks.gpu_report import (
    Budget,
    PhaseContext,
    PhaseResult,
    Report,
    mark_ended,
    read_report,
    wait_for_bundle,
)
from insid3.benchmarks.gpu_side_by_side import configuration_verdict

TESTS = Path(__file__).resolve().parents[1]
GPU_MD = TESTS.parent / "benchmarks" / "GPU.md"


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
    (("--phases", "tests,bogus"), "gpu_acceptance: --phases: unknown bogus; choose from preflight, export, tests, "
                                  "parity, rope, side_by_side, compile"),
    (("--budget-s", "0"), "gpu_acceptance: the budget must be > 0 s, got 0.0"),
])
def test_bad_arguments_are_one_line_before_any_gpu_check(tmp_path, args, line):
    run = _cli("--out", str(tmp_path), *args)
    assert run.returncode == 2 and run.stderr.splitlines() == [line]


def test_help_shows_the_defaults():
    run = _cli("--help")
    assert run.returncode == 0
    flat = "".join(run.stdout.split())  # argparse wraps the list anywhere
    assert "(default:300.0)" in flat and "preflight,export,tests,parity,rope,side_by_side,compile" in flat


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


def test_an_optional_phase_out_of_time_is_skipped_not_failed(tmp_path):
    specs = (PhaseSpec("slow", limit_s=1.5, min_s=1, optional=True),)
    results = run_phases(specs, Budget(100), command=_fake_command, work=tmp_path, on_result=lambda r: None,
                         poll_s=0.05)
    assert results["slow"].status == "skipped"
    assert results["slow"].summary == "optional phase stopped at its limit of 2 s; partial: first half done"
    assert run_outcome(results.values()) == "passed"


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
    folder, why = wait_for_bundle(ctx, "small-768", reserve_s=0.5)  # never exported: gives up in time
    assert folder is None and why.startswith("small-768 was not exported in time")
    folder = tmp_path / "bundles" / "small-768"
    folder.mkdir(parents=True)
    (folder / "insid3.json").write_text("{}")
    assert wait_for_bundle(ctx, "small-768", reserve_s=0.0) == (folder, "")


def test_waiting_stops_when_the_export_has_ended_without_the_bundle(tmp_path):
    ctx = PhaseContext(work=tmp_path, out=tmp_path, result_file=tmp_path / "r.json", deadline=time.monotonic() + 60)
    mark_ended(tmp_path, "export", "error", "exit status 1: Killed")
    started = time.monotonic()
    folder, why = wait_for_bundle(ctx, "large-1024", reserve_s=1.0)
    assert folder is None and time.monotonic() - started < 1.0
    assert why == "the export phase ended (error: exit status 1: Killed) without large-1024"


def test_a_dead_export_is_noticed_by_the_phase_waiting_on_it(tmp_path):
    """The real wait, in a phase process, beside an export process that dies: the waiting phase
    learns of it from the run (its .ended record) within a poll, not at its own deadline."""
    waiter = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from insid3.benchmarks.gpu_report import PhaseContext, wait_for_bundle
        result = Path(sys.argv[1])
        ctx = PhaseContext(work=Path({str(tmp_path)!r}), out=result.parent, result_file=result,
                           deadline=time.monotonic() + 60)
        started = time.monotonic()
        folder, why = wait_for_bundle(ctx, "small-768", reserve_s=5)
        ctx.write("skipped", why, {{"waited_s": time.monotonic() - started}})
    """)

    def command(spec, result_file, limit_s):
        if spec.name == "export":
            return [sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit('export: out of memory')"]
        return [sys.executable, "-c", waiter, str(result_file)]

    specs = (PhaseSpec("export", limit_s=60, background=True), PhaseSpec("parity", limit_s=60))
    results = run_phases(specs, Budget(100), command=command, work=tmp_path, on_result=lambda r: None, poll_s=0.05)
    assert results["export"].status == "error"
    assert results["parity"].status == "skipped" and results["parity"].details["waited_s"] < 10
    assert results["parity"].summary == ("the export phase ended (error: exit status 1: export: out of memory) "
                                         "without small-768")


def test_a_failed_gate_skips_everything_else(tmp_path):
    specs = (PhaseSpec("crash", limit_s=30, gate=True), PhaseSpec("background", limit_s=30, background=True),
             PhaseSpec("ok", limit_s=30))
    heard = []
    results = run_phases(specs, Budget(100), command=_fake_command, work=tmp_path, on_result=heard.append, poll_s=0.05)
    assert [(r.name, r.status) for r in heard] == [("crash", "error"), ("background", "skipped"), ("ok", "skipped")]
    assert results["ok"].summary == "crash did not pass: exit status 1: crashed: CUDA error 700"
    assert not (tmp_path / "phase-background.log").exists()  # never started


def test_a_passed_gate_comes_first_and_then_the_background_starts(tmp_path):
    specs = (PhaseSpec("background", limit_s=30, background=True), PhaseSpec("ok", limit_s=30, gate=True),
             PhaseSpec("failing", limit_s=30))
    heard = []
    run_phases(specs, Budget(100), command=_fake_command, work=tmp_path, on_result=heard.append, poll_s=0.05)
    assert [r.name for r in heard] == ["ok", "failing", "background"]
    assert run_outcome(heard) == "failed" and run_outcome(heard[:1] + heard[2:]) == "passed"
    assert run_outcome([PhaseResult("x", "skipped", 0, 0, "no time")]) == "passed"  # a slow box is not a failed one


def test_the_budgets_fit_one_device_call_twice_in_a_lease():
    """The run fits the device tool's one call (at most 600 s) with the package install, and two
    such calls (a rerun after a fix) fit one lease with the machine's start; every phase's own needs
    fit its limit; the foreground phases' limits fit the budget; the order puts the gate first,
    the kernels' tests and parity before the long measurements, compile last."""
    a = gpu_acceptance
    assert a.DEFAULT_BUDGET_S + a.INSTALL_S <= a.DEVICE_CALL_S <= 600
    assert 2 * a.DEVICE_CALL_S + a.MACHINE_START_S <= a.LEASE_S
    foreground = [spec for spec in PHASES if not spec.background]
    assert sum(spec.limit_s for spec in foreground) <= a.DEFAULT_BUDGET_S
    assert all(spec.min_s <= spec.limit_s <= a.DEFAULT_BUDGET_S for spec in PHASES)
    limits = {spec.name: spec.limit_s for spec in PHASES}
    assert gpu_parity.COMPILE_NEEDS_S <= limits["compile"] and gpu_parity.PARITY_NEEDS_S <= limits["parity"]
    assert max(gpu_side_by_side.NEEDS_S.values()) <= limits["side_by_side"]
    names = [spec.name for spec in foreground]
    assert PHASES[0].gate and names.index("tests") < names.index("parity") < names.index("side_by_side")
    assert names[-1] == "compile"


def test_gpu_md_gives_the_device_call_these_budgets_need():
    text = GPU_MD.read_text()
    timeouts = {int(t) for t in re.findall(r'"timeout_s":\s*(\d+)', text)}
    assert timeouts == {int(gpu_acceptance.DEVICE_CALL_S)}
    assert "--simulate-cpu" in text and "insid3.benchmarks.gpu_acceptance" in text


def test_the_gpu_test_files_are_every_file_with_a_cupy_variant_or_a_gpu_mark():
    files = {str(path.relative_to(TESTS)) for path in gpu_test_files(TESTS)}
    assert {"kernels/test_lattice_filter.py", "kernels/test_crf_kernels.py", "kernels/test_kernels_resize.py",
            "kernels/test_kernels_pruned.py", "runtime/test_torch_cuda_backend.py", "runtime/test_tensorrt_runner.py",
            "export/test_gpu_rope_rescale.py", "export/test_export_tensorrt.py"} <= files
    assert "bench/test_gpu_acceptance.py" not in files and "kernels/test_cupy_api.py" not in files
    for path in TESTS.rglob("test_*.py"):  # the derivation agrees with a plain reading of every file
        if path == Path(__file__).resolve():
            continue  # this file spells the patterns out
        text = path.read_text()
        plain = bool(re.search(r"def test\w*\([^)]*\bxp\b", text) or "mark.gpu" in text
                     or re.search(r"params=\[[^]]*\"cupy\"", text))
        assert (str(path.relative_to(TESTS)) in files) == plain, path


@pytest.mark.parametrize(("source", "has"), [
    ("def test_a(xp):\n    pass", True),
    ("import pytest\n@pytest.mark.gpu\ndef test_a():\n    pass", True),
    ("import pytest\n@pytest.fixture(params=['numba', 'cupy'])\ndef backend(request):\n    pass", True),
    ("def test_a(tmp_path):\n    'cupy is mentioned'", False),
])
def test_a_gpu_variant_is_read_from_the_source(source, has):
    assert has_gpu_variant(source) is has


def test_the_preflight_names_what_is_missing_in_one_line():
    found, missing = import_modules(["numpy", "insid3_no_such_module"])
    assert list(found) == ["numpy"] and list(missing) == ["insid3_no_such_module"]
    line = missing_line(missing)
    assert "\n" not in line and line.startswith("missing: insid3_no_such_module (ModuleNotFoundError: No module named")


def test_side_by_side_tells_failed_from_skipped_per_configuration():
    assert configuration_verdict({"small-768 fp32": "passed", "large-1024 fp32": "skipped"}) == "passed"
    assert configuration_verdict({"small-768 fp32": "passed", "large-1024 fp32": "failed"}) == "failed"
    assert configuration_verdict({"small-768 fp32": "skipped", "large-1024 fp32": "skipped"}) == "skipped"


def test_the_whole_run_simulated_on_the_cpu(tmp_path):
    """--simulate-cpu: every phase's logic, budget and report on the CPU (tiny bundles exported for
    real, the CPU torch backend beside ONNX Runtime, the authors' way, wall-clock stages)."""
    out, work = tmp_path / "out", tmp_path / "work"
    run = _cli("--simulate-cpu", "--out", str(out), "--work", str(work), timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = read_report(out)
    assert report.outcome == "passed" and report.environment["simulated_on_cpu"] is True
    statuses = {name: result.status for name, result in report.phases.items()}
    assert statuses == {"preflight": "passed", "tests": "passed", "export": "passed", "parity": "passed",
                        "rope": "passed", "side_by_side": "passed", "compile": "skipped"}
    configurations = report.phases["side_by_side"].details["configurations"]
    assert {c["outcome"] for c in configurations.values()} == {"passed"} and len(configurations) == 2
    assert report.phases["parity"].details["fp32"]["within"] is True
    assert report.elapsed_s < gpu_acceptance.DEFAULT_BUDGET_S
    assert sorted(p.name for p in out.iterdir()) == ["acceptance.json", "acceptance.log", "acceptance.md",
                                                     "rope-rescale.json", "tests-junit.xml"]


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


def test_the_tests_run_by_folder_kernels_first_and_their_reports_merge():
    files = [TESTS / "runtime" / "test_a.py", TESTS / "export" / "test_b.py", TESTS / "kernels" / "test_c.py",
             TESTS / "kernels" / "test_d.py"]
    groups = group_test_files(files, TESTS)
    assert [[p.name for p in g] for g in groups] == [["test_c.py", "test_d.py"], ["test_b.py"], ["test_a.py"]]
    other = ('<testsuites><testsuite name="pytest" tests="1"><testcase classname="tests.x" name="test_y[cupy]"/>'
             '</testsuite></testsuites>')
    summary = junit_summary(merged_junit([JUNIT, other]))
    assert (summary["tests"], summary["passed"], summary["failed"], summary["cupy_passed"]) == (6, 3, 1, 2)


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
