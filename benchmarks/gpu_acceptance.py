"""One prepared GPU acceptance run: `python -m insid3.benchmarks.gpu_acceptance --out DIR`.

Made for a borrowed GPU box with minutes to spare and no network (torch with CUDA, CuPy, numpy,
onnx, the CPU onnxruntime; no TensorRT). Phases, each in its own process (one that crashes or
hangs costs only itself) with its own time limit inside one budget (DEFAULT_BUDGET_S: one device
call of DEVICE_CALL_S, twice inside a LEASE_S lease with the machine's start), the report
rewritten in DIR after each (acceptance.json and acceptance.md; tests-junit.xml, rope-rescale.json
and acceptance.log beside them). Most informative first:

- preflight (a gate: the run stops there when it fails): imports every module a phase needs and
  records the versions (driver, CUDA runtime, NVRTC, torch, CuPy, numba, onnx, onnxscript, ONNX
  Runtime and its providers); one line names what is missing;
- export (in the background once the preflight passed): random-init ViT-S/16 at 768, then
  ViT-L/16 at 1024, through insid3.export, no TensorRT;
- tests: every test file with a CuPy variant or a gpu mark (`pytest -k "cupy or gpu"`);
- parity: torch-cuda features and masks against the CPU backend (fp32, bf16, fp16), CUDA graphs;
- rope: the per-block RoPE rescale factors torch.manual_seed(0) gives on CUDA for ViT-S/B/L;
- side_by_side: ViT-S 768 and ViT-L 1024, ours against the authors' way on this GPU, in fp32 and
  in bf16 autocast + TF32: CUDA-event stage timings, FPS, peak device memory;
- compile: torch.compile's first call and its features against eager.

Without a CUDA device it stops at once with one line and exit status 2. `--simulate-cpu` runs
every phase's logic, budgets and report on the CPU with the GPU calls replaced (tiny bundles,
the CPU torch backend, no CUDA events), as the test suite does. The phases themselves are in
gpu_phases.py (with gpu_parity.py and gpu_side_by_side.py); this module runs them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from insid3 import gpu_stack
from insid3.benchmarks.gpu_parity import COMPILE_NEEDS_S, PARITY_NEEDS_S
from insid3.benchmarks.gpu_report import Budget, PhaseResult, Report, ended_file, mark_ended
from insid3.benchmarks.gpu_side_by_side import NEEDS_S as SIDE_BY_SIDE_NEEDS_BY_BUNDLE

# The device tool lends one GPU for LEASE_S in all (its start included); one call may take at most
# 600 s. A run is one call of DEVICE_CALL_S, so a second (a rerun after a fix) fits the same lease.
LEASE_S = 900.0
MACHINE_START_S = 120.0  # a fresh machine's start and the working tree's transfer, at most
DEVICE_CALL_S = 380.0  # the timeout_s of the one device call (benchmarks/GPU.md)
INSTALL_S = 40.0  # before the budget starts: pip install -e of the package, Python's start
DEFAULT_BUDGET_S = 300.0
SIMULATED_SLOWDOWN = 3.0  # --simulate-cpu: limits and budget stretched for a shared CPU
LOG_FILE = "acceptance.log"
NO_GPU_EXIT = 2
KILL_GRACE_S = 3.0


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    limit_s: float
    background: bool = False  # started beside the others, once the gates have passed
    min_s: float = 15.0  # below this much time left it is skipped rather than started
    gate: bool = False  # run first; when it does not pass, the rest is skipped
    optional: bool = False  # stopped at its limit it is "skipped", not "timed out" (it does not fail the run)


SIDE_BY_SIDE_NEEDS_S = min(SIDE_BY_SIDE_NEEDS_BY_BUNDLE.values())

PHASES = (
    PhaseSpec("preflight", limit_s=45, min_s=5, gate=True),  # a cold disk's first imports of torch, CuPy, ...
    PhaseSpec("export", limit_s=255, background=True),
    PhaseSpec("tests", limit_s=80, min_s=20),  # a fresh machine compiles every CuPy kernel (NVRTC) once
    PhaseSpec("parity", limit_s=40, min_s=PARITY_NEEDS_S),
    PhaseSpec("rope", limit_s=15, min_s=5),
    PhaseSpec("side_by_side", limit_s=80, min_s=SIDE_BY_SIDE_NEEDS_S),
    PhaseSpec("compile", limit_s=40, min_s=COMPILE_NEEDS_S, optional=True),
)
PHASE_NAMES = tuple(spec.name for spec in PHASES)

Command = Callable[[PhaseSpec, Path, float], list[str]]  # (phase, its result file, its limit) -> argv


@dataclass
class _Running:
    spec: PhaseSpec
    process: subprocess.Popen
    started: float
    limit_s: float
    result_file: Path
    log_file: Path


def _start(spec: PhaseSpec, limit_s: float, command: Command, work: Path) -> _Running:
    result_file, log_file = work / f"phase-{spec.name}.json", work / f"phase-{spec.name}.log"
    result_file.unlink(missing_ok=True)
    with log_file.open("w") as log:
        process = subprocess.Popen(
            command(spec, result_file, limit_s), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # its own process group: killed whole
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return _Running(spec, process, time.monotonic(), limit_s, result_file, log_file)


def _stop(running: _Running) -> None:
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(running.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            running.process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _collect(running: _Running, forced: str | None) -> PhaseResult:
    """The phase's result file (complete, or partial where it was stopped), or its last log line."""
    seconds = time.monotonic() - running.started
    written = json.loads(running.result_file.read_text()) if running.result_file.is_file() else None
    base = dict(name=running.spec.name, seconds=seconds, limit_s=running.limit_s)
    if forced is not None:
        partial = f"; partial: {written['summary']}" if written else ""
        summary = f"stopped at its limit of {running.limit_s:.0f} s{partial}" if forced == "timed out" else forced
        status = "timed out" if forced == "timed out" else "interrupted"
        if status == "timed out" and running.spec.optional:  # measures an option: out of time is not a fault
            status, summary = "skipped", f"optional phase {summary}"
        return PhaseResult(**base, status=status, summary=summary,
                           details=(written or {}).get("details", {}), markdown=tuple((written or {}).get("markdown", ())))
    if written is None or running.process.returncode != 0:
        why = f"exit status {running.process.returncode}: {_last_line(running.log_file)}"
        return PhaseResult(**base, status="error", summary=why, details=(written or {}).get("details", {}))
    return PhaseResult(**base, status=written["status"], summary=written["summary"],
                       details=written.get("details", {}), markdown=tuple(written.get("markdown", ())))


def run_phases(
    specs: Sequence[PhaseSpec], budget: Budget, *, command: Command, work: Path,
    on_result: Callable[[PhaseResult], None], poll_s: float = 0.2,
) -> dict[str, PhaseResult]:
    """Gates run first, one after another; then the background phases start and the others run one
    after another. Each is stopped at its limit (its own, cut to the budget left), a gate that does
    not pass skips the rest, and `on_result` hears of each as it ends (`mark_ended` records it in
    `work`, where a phase waiting on another's output looks)."""
    work.mkdir(parents=True, exist_ok=True)
    for spec in specs:  # an earlier run's record in the same work folder must not be read as this run's
        ended_file(work, spec.name).unlink(missing_ok=True)
    results: dict[str, PhaseResult] = {}
    queue = [spec for spec in specs if not spec.background]
    background = [spec for spec in specs if spec.background]
    running: list[_Running] = []
    stopped_by: str | None = None  # the summary of a gate that did not pass

    def finish(result: PhaseResult) -> None:
        results[result.name] = result
        mark_ended(work, result.name, result.status, result.summary)
        on_result(result)

    def skip(spec: PhaseSpec, why: str) -> None:
        finish(PhaseResult(spec.name, "skipped", 0.0, 0.0, why))

    try:
        while queue or running or background:
            gates_pending = any(spec.gate for spec in queue) or any(r.spec.gate for r in running)
            if background and not gates_pending:
                for spec in background:
                    if stopped_by is not None:
                        skip(spec, stopped_by)
                    else:
                        running.append(_start(spec, budget.limit_for(spec.limit_s), command, work))
                background = []
            if queue and not any(not r.spec.background for r in running):
                spec = queue.pop(0)
                limit = budget.limit_for(spec.limit_s)
                if stopped_by is not None:
                    skip(spec, stopped_by)
                elif limit < spec.min_s:
                    finish(PhaseResult(spec.name, "skipped", 0.0, limit, f"only {budget.remaining():.0f} s of the "
                                       f"budget left, it needs {spec.min_s:.0f} s to start"))
                else:
                    running.append(_start(spec, limit, command, work))
                continue
            for item in list(running):
                over = time.monotonic() - item.started > item.limit_s or budget.remaining() <= 0
                if item.process.poll() is None and not over:
                    continue
                if item.process.poll() is None:
                    _stop(item)
                running.remove(item)
                result = _collect(item, "timed out" if over and item.process.returncode != 0 else None)
                if item.spec.gate and result.status != "passed":
                    stopped_by = f"{item.spec.name} did not pass: {result.summary}"
                finish(result)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for item in running:
            _stop(item)
            finish(_collect(item, "interrupted by Ctrl-C"))
        raise
    return results


def run_outcome(results: Iterable[PhaseResult]) -> str:
    """"failed" when a phase failed, erred or was stopped at its limit; else "passed" (a phase
    skipped for lack of time or of its input is named in the report, it does not fail the run)."""
    return "failed" if any(r.status in ("failed", "error", "timed out") for r in results) else "passed"


def phase_command(out: Path, work: Path, simulate: bool = False) -> Command:
    def command(spec: PhaseSpec, result_file: Path, limit_s: float) -> list[str]:
        return [sys.executable, "-m", "insid3.benchmarks.gpu_phases", spec.name, "--work", str(work),
                "--out", str(out), "--result", str(result_file), "--seconds", f"{limit_s:.1f}",
                *(["--simulate-cpu"] if simulate else [])]

    return command


def no_gpu_reason() -> str | None:
    """One line where this machine cannot run the acceptance phases, else None."""
    if gpu_stack.driver_cuda_version() is None:
        return "no CUDA driver on this machine (libcuda not found): the GPU acceptance run needs an NVIDIA GPU"
    try:
        import torch
    except ImportError:
        return "torch is not installed: the GPU acceptance run needs torch with CUDA"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda})"
    return None


def environment() -> dict:
    stack = gpu_stack.installed_stack()
    mismatch = gpu_stack.check_stack(stack)
    gpus = "nvidia-smi not found"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm", "--format=csv,noheader"]
        gpus = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip() or "nvidia-smi: nothing"
    versions = {}
    for name in ("torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "gpus": gpus,
        "driver_cuda": gpu_stack.cuda_version_text(stack.driver_cuda) if stack.driver_cuda else None,
        "wheel_check": mismatch.line if mismatch else "the CUDA wheels fit the driver",
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def _phases(text: str, simulate: bool = False) -> tuple[PhaseSpec, ...]:
    """The asked phases in PHASES' order; in a simulated run with SIMULATED_SLOWDOWN times their
    limits (a shared CPU exports, imports and infers slower than the GPU box the limits are for)."""
    asked = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in asked if name not in PHASE_NAMES]
    if unknown or not asked:
        raise ValueError(f"--phases: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(PHASE_NAMES)}")
    scale = SIMULATED_SLOWDOWN if simulate else 1.0
    return tuple(replace(spec, limit_s=spec.limit_s * scale) for spec in PHASES if spec.name in asked)


@dataclass(frozen=True, kw_only=True)
class AcceptanceSettings:
    """out: the report's folder (JSON, markdown, logs); work: bundles and scratch (None: a new
    temporary folder); phases: a comma-separated subset of PHASE_NAMES; simulate_cpu: a dry run on
    the CPU, every phase's logic, budgets and report, GPU calls replaced."""

    out: Path
    work: Path | None = None
    budget_s: float = DEFAULT_BUDGET_S
    phases: str = ",".join(PHASE_NAMES)
    simulate_cpu: bool = False


def run(args: AcceptanceSettings) -> int:
    try:
        specs = _phases(args.phases, args.simulate_cpu)
        budget = Budget(args.budget_s * (SIMULATED_SLOWDOWN if args.simulate_cpu else 1.0))
    except ValueError as exc:
        print(f"gpu_acceptance: {exc}", file=sys.stderr)
        return 2
    reason = None if args.simulate_cpu else no_gpu_reason()
    if reason is not None:
        print(f"gpu_acceptance: {reason}", file=sys.stderr)
        return NO_GPU_EXIT
    out = args.out.resolve()
    work = (args.work or Path(tempfile.mkdtemp(prefix="insid3-gpu-acceptance-"))).resolve()
    report = Report(budget_s=budget.total_s, environment={**environment(), "simulated_on_cpu": args.simulate_cpu})
    for name in set(PHASE_NAMES) - {spec.name for spec in specs}:  # a phase waiting on one of these stops waiting
        mark_ended(work, name, "skipped", "not part of this run")

    def on_result(result: PhaseResult) -> None:
        report.phases[result.name], report.elapsed_s = result, budget.elapsed()
        report.write(out)
        logs = sorted(work.glob("phase-*.log"))
        (out / LOG_FILE).write_text("".join(f"==== {p.stem}\n{p.read_text(errors='replace')}" for p in logs))
        print(f"{budget.elapsed():6.1f} s  {result.name}: {result.status} ({result.seconds:.1f} s) {result.summary}",
              flush=True)

    report.write(out)
    print(f"gpu_acceptance: {', '.join(s.name for s in specs)} within {budget.total_s:.0f} s; report in {out}", flush=True)
    try:
        run_phases(specs, budget, command=phase_command(out, work, args.simulate_cpu), work=work, on_result=on_result)
    except KeyboardInterrupt:
        report.outcome, report.elapsed_s = "interrupted", budget.elapsed()
        report.write(out)
        print("gpu_acceptance: interrupted; the phases that finished are in the report", file=sys.stderr)
        return 130
    report.outcome = run_outcome(report.phases.values())
    report.elapsed_s = budget.elapsed()
    report.write(out)
    print(report.markdown(), flush=True)
    return 0 if report.outcome == "passed" else 1


if __name__ == "__main__":  # `insid3 bench gpu-acceptance` under its former name
    from insid3.engine.cli.main import run_command

    sys.exit(run_command("gpu_acceptance", "bench", ["gpu-acceptance", *sys.argv[1:]]))
