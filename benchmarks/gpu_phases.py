"""The GPU acceptance phases, one per process: `python -m insid3.benchmarks.gpu_phases NAME ...`.

gpu_acceptance.py starts each with its result file and its seconds; a phase writes its result
(status, one-line summary, details, markdown lines) as it goes, so one stopped at its limit
still reports what it did. export, rope and tests are here; parity in gpu_parity.py and
side_by_side in gpu_side_by_side.py.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import insid3
from insid3.benchmarks.gpu_parity import parity_phase
from insid3.benchmarks.gpu_report import BUNDLES, PhaseContext, bundle_folder
from insid3.benchmarks.gpu_side_by_side import side_by_side_phase

JUNIT_FILE = "tests-junit.xml"
ROPE_FILE = "rope-rescale.json"
GPU_TEST_SELECTION = "cupy or gpu"  # the xp fixture's cupy variants and the tests marked gpu
GPU_TEST_FILES = (
    "test_kernels_aggregation.py", "test_kernels_linkage.py", "test_kernels_matching.py",
    "test_kernels_pruned.py", "test_kernels_resize.py", "test_correspondence_kernels.py",
    "test_torch_cuda_backend.py", "test_gpu_rope_rescale.py", "test_export_tensorrt.py", "test_tensorrt_runner.py",
)


# ---------------------------------------------------------------- export
def export_phase(ctx: PhaseContext) -> None:
    import torch

    from insid3.export import SIZES, ExportSettings, export_bundle

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # the tests run beside it
    done: dict[str, float] = {}
    for key, (size, resolution) in BUNDLES.items():
        started = time.perf_counter()
        settings = ExportSettings(model=SIZES[size], resolution=resolution, out_dir=bundle_folder(ctx.work, key),
                                  random_init=True, seed=0, trt=False, force=True)
        export_bundle(settings, report=lambda line: print(line, flush=True))
        done[key] = round(time.perf_counter() - started, 1)
        ctx.write("passed", ", ".join(f"{k} in {s} s" for k, s in done.items()), {"export_seconds": done},
                  [f"- {k}: exported (ONNX, parity, basis; no TensorRT) in {s} s" for k, s in done.items()])


# ---------------------------------------------------------------- rope
def rope_phase(ctx: PhaseContext) -> None:
    import torch

    from insid3.export import SIZES
    from insid3.export.rope_rescale import draw_rescale, factors_document, predicted_log_factors, write_factors

    draws = {size: draw_rescale(SIZES[size].depth, device="cuda", seed=0) for size in ("small", "base", "large")}
    document = factors_document(
        draws, seed=0, device=torch.cuda.get_device_name(), torch_version=torch.__version__,
        source="CUDA generator after torch.manual_seed(0), one 1-element uniform_ per block as DINOv3's hub ViTs "
               "draw in training mode",
    )
    path = write_factors(ctx.out / ROPE_FILE, document)
    depth = len(draws["large"][0])
    agree = sum(a == b for a, b in zip(draws["large"][0], predicted_log_factors(depth)))
    summary = f"{path.name} written; the CPU replica of CUDA's Philox predicts {agree}/{depth} draws exactly"
    lines = [f"Written to `{path.name}` (per size: `log_factors` u and `factors` exp(u)).", "",
             "| block | u | factor |", "|---|---|---|"]
    lines += [f"| {i} | {u:.9g} | {f:.9g} |" for i, (u, f) in enumerate(zip(*draws["large"]))]
    ctx.write("passed", summary, {"file": path.name, "predicted_exactly": agree, "blocks": depth,
                                  "large": {"log_factors": draws["large"][0], "factors": draws["large"][1]}}, lines)


# ---------------------------------------------------------------- tests
def junit_summary(xml_text: str) -> dict:
    """Counts, failed test names and skip reasons of a pytest junit XML report."""
    root = ElementTree.fromstring(xml_text)
    cases = list(root.iter("testcase"))
    failed, skipped, passed = [], Counter(), []
    for case in cases:
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if problem is not None:
            failed.append(f"{name}: {(problem.get('message') or '').splitlines()[0][:200] if problem.get('message') else ''}")
        elif skip is not None:
            skipped[re.sub(r"^.*?: ", "", skip.get("message") or "")[:160]] += 1
        else:
            passed.append(name)
    return {
        "tests": len(cases), "passed": len(passed), "failed": len(failed), "skipped": sum(skipped.values()),
        "cupy_passed": sum(bool(re.search(r"[\[-]cupy[\]-]", name)) for name in passed),  # the xp fixture's id
        "failures": failed[:30],
        "skip_reasons": dict(skipped.most_common(10)),
    }


def junit_verdict(summary: dict) -> tuple[str, str]:
    """(status, one line): every selected test passed or was skipped, and CuPy tests really ran."""
    line = (f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped "
            f"({summary['cupy_passed']} CuPy variants passed)")
    if summary["failed"]:
        return "failed", line
    if summary["cupy_passed"] == 0:
        return "failed", f"{line}: no CuPy test ran"
    return "passed", line


def tests_phase(ctx: PhaseContext) -> None:
    root = Path(insid3.__file__).resolve().parents[1]
    files = [str(root / "tests" / name) for name in GPU_TEST_FILES if (root / "tests" / name).is_file()]
    if not files:
        ctx.write("error", f"no test files under {root / 'tests'}: run from a checkout (pip install -e .)", {})
        return
    junit = ctx.out / JUNIT_FILE
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-k", GPU_TEST_SELECTION,
               f"--junitxml={junit}", *files]
    try:
        subprocess.run(command, cwd=root, timeout=max(5.0, ctx.left() - 5.0), check=False)
    except subprocess.TimeoutExpired:
        ctx.write("timed out", f"pytest did not finish in {ctx.left():.0f} s", {"command": command})
        return
    if not junit.is_file():
        ctx.write("error", "pytest wrote no junit report (see acceptance.log)", {"command": command})
        return
    summary = junit_summary(junit.read_text())
    status, line = junit_verdict(summary)
    lines = [f"`{' '.join(command[2:5])} -k \"{GPU_TEST_SELECTION}\"` on {len(files)} files: {line}."]
    lines += [f"- FAILED {failure}" for failure in summary["failures"]]
    lines += [f"- skipped x{count}: {reason}" for reason, count in summary["skip_reasons"].items()]
    ctx.write(status, line, {**summary, "files": [Path(f).name for f in files]}, lines)


PHASES: dict[str, Callable[[PhaseContext], None]] = {
    "export": export_phase, "rope": rope_phase, "tests": tests_phase, "parity": parity_phase,
    "side_by_side": side_by_side_phase,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m insid3.benchmarks.gpu_phases")
    parser.add_argument("phase", choices=tuple(PHASES))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    ctx = PhaseContext(work=args.work, out=args.out, result_file=args.result,
                       deadline=time.monotonic() + args.seconds)
    try:
        PHASES[args.phase](ctx)
    except Exception as exc:  # noqa: BLE001 - one phase's failure is its result, not the run's end
        ctx.write("error", f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:300]}", {})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
