"""The GPU acceptance phases, one per process: `python -m insid3.benchmarks.gpu_phases NAME ...`.

gpu_acceptance.py starts each with its result file and its seconds; a phase writes its result
(status, one-line summary, details, markdown lines) as it goes, so one stopped at its limit
still reports what it did. preflight, export, rope and tests are here; parity and compile in
gpu_parity.py, side_by_side in gpu_side_by_side.py. With --simulate-cpu each runs its logic on the
CPU (PhaseContext.simulate: tiny bundles, the CPU torch backend, CPU generators).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import insid3
from insid3.benchmarks.gpu_parity import compile_phase, parity_phase
from insid3.benchmarks.gpu_report import PhaseContext, bundle_folder
from insid3.benchmarks.gpu_side_by_side import side_by_side_phase
from insid3.benchmarks.writer import table

JUNIT_FILE = "tests-junit.xml"
ROPE_FILE = "rope-rescale.json"
GPU_TEST_SELECTION = "cupy or gpu"  # the xp fixture's cupy variants and the tests marked gpu
# A simulated run's tests phase: one small file, its NumPy variants (the logic, not the device).
SIMULATED_TEST_FILES = ("kernels/test_kernels_resize.py",)
SIMULATED_TEST_SELECTION = "numpy and nearest"

# ---------------------------------------------------------------- preflight
# Every module a phase imports (third party, then ours), with the distribution that holds it.
PHASE_MODULES = {
    "numpy": "numpy", "scipy": "scipy", "tqdm": "tqdm", "yaml": "pyyaml", "PIL": "pillow", "numba": "numba", "sklearn": "scikit-learn",
    "torch": "torch", "cupy": None, "onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": None,
    "pytest": "pytest", "hypothesis": "hypothesis",
    "insid3.kernels": None, "insid3.engine.runtime.segmenter": None, "insid3.export": None,
    "insid3.authors_way": None, "insid3.benchmarks.inputs": None, "insid3.engine.runtime.backends.torch_cuda_backend": None,
}
GPU_ONLY_MODULES = ("cupy",)  # a simulated run goes on without them
OPTIONAL_MODULES = ("tensorrt",)  # their tests skip, and the report says why


def _version(module: object, distribution: str | None) -> str:
    version = getattr(module, "__version__", None)
    if version is None and distribution:
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = None
    return str(version or "present")


def import_modules(names: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({module: version}, {module: why it cannot be imported}) for `names`."""
    found, missing = {}, {}
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - ImportError, or a library that breaks while loading
            missing[name] = f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
            continue
        found[name] = _version(module, PHASE_MODULES.get(name))
    return found, missing


def missing_line(missing: dict[str, str]) -> str:
    """The one line naming what this machine lacks for the run."""
    return "missing: " + "; ".join(f"{name} ({why})" for name, why in missing.items())


def _gpu_versions() -> dict[str, str]:
    """Driver, CUDA runtime, NVRTC, the device, ORT's providers; and one NVRTC kernel compiled and run."""
    import cupy
    import onnxruntime
    import torch

    from insid3 import gpu_stack

    def cuda_text(value: int) -> str:
        return f"{value // 1000}.{value % 1000 // 10}"

    nvrtc = cupy.cuda.nvrtc.getVersion()
    square = cupy.ElementwiseKernel("float32 x", "float32 y", "y = x * x", "insid3_preflight_square")
    checked = float(square(cupy.arange(4, dtype=cupy.float32)).sum())  # 0 + 1 + 4 + 9
    if checked != 14.0:
        raise RuntimeError(f"an NVRTC-compiled kernel computed {checked}, expected 14.0")
    driver = gpu_stack.driver_cuda_version()
    return {
        "driver_cuda": gpu_stack.cuda_version_text(driver) if driver else "unknown",
        "cuda_runtime (cupy)": cuda_text(cupy.cuda.runtime.runtimeGetVersion()),
        "nvrtc": f"{nvrtc[0]}.{nvrtc[1]}",
        "torch_cuda": str(torch.version.cuda), "torch_sees_cuda": str(torch.cuda.is_available()),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "cupy_devices": str(cupy.cuda.runtime.getDeviceCount()),
        "onnxruntime_providers": ", ".join(onnxruntime.get_available_providers()),
    }


def preflight_phase(ctx: PhaseContext) -> None:
    names = [n for n in PHASE_MODULES if not (ctx.simulate and n in GPU_ONLY_MODULES)]
    found, missing = import_modules(names)
    optional, absent = import_modules(OPTIONAL_MODULES)
    details: dict = {"versions": found, "missing": missing, "optional": optional, "optional_absent": absent,
                     "simulated": ctx.simulate}
    if not missing and not ctx.simulate:
        try:
            details["gpu"] = _gpu_versions()
        except Exception as exc:  # noqa: BLE001 - a CUDA stack that imports but cannot run is the finding
            missing["cuda stack"] = f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    lines = [f"- {name}: {version}" for name, version in {**found, **details.get("gpu", {})}.items()]
    lines += [f"- MISSING {name}: {why}" for name, why in missing.items()]
    lines += [f"- optional, absent: {name} ({why})" for name, why in absent.items()]
    if missing:
        ctx.write("failed", missing_line(missing), details, lines)
        return
    gpu = details.get("gpu", {})
    summary = ", ".join(f"{name} {found[name]}" for name in ("torch", "cupy", "numba", "onnx", "onnxruntime")
                        if name in found)
    if gpu:
        summary += f"; driver CUDA {gpu['driver_cuda']}, runtime {gpu['cuda_runtime (cupy)']}, NVRTC {gpu['nvrtc']}"
    ctx.write("passed", summary + ("; simulated on the CPU" if ctx.simulate else ""), details, lines)


# ---------------------------------------------------------------- export
def export_phase(ctx: PhaseContext) -> None:
    import torch

    from insid3.export import SIZES, ExportSettings, export_bundle
    from insid3.export.config import VitConfig

    models = {**SIZES, "tiny": VitConfig(name="tiny", embed_dim=128, depth=2, num_heads=2)}
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # the tests run beside it
    done: dict[str, float] = {}
    for key, (size, resolution) in ctx.bundles.items():  # ViT-S 768 first: parity waits for it
        started = time.perf_counter()
        settings = ExportSettings(model=models[size], resolution=resolution, out_dir=bundle_folder(ctx.work, key),
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

    draws = {size: draw_rescale(SIZES[size].depth, device=ctx.device, seed=0) for size in ("small", "base", "large")}
    document = factors_document(
        draws, seed=0, device="cpu (simulated run)" if ctx.simulate else torch.cuda.get_device_name(),
        torch_version=torch.__version__,
        source="CUDA generator after torch.manual_seed(0), one 1-element uniform_ per block as DINOv3's hub ViTs "
               "draw in training mode",
    )
    path = write_factors(ctx.out / ROPE_FILE, document)
    depth = len(draws["large"][0])
    agree = sum(a == b for a, b in zip(draws["large"][0], predicted_log_factors(depth)))
    summary = f"{path.name} written; the CPU replica of CUDA's Philox predicts {agree}/{depth} draws exactly"
    lines = [f"Written to `{path.name}` (per size: `log_factors` u and `factors` exp(u)).", "",
             *table(("block", "u", "factor"), ((i, f"{u:.9g}", f"{f:.9g}") for i, (u, f) in enumerate(zip(*draws["large"]))))]
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


def junit_verdict(summary: dict, cupy_required: bool = True) -> tuple[str, str]:
    """(status, one line): every selected test passed or was skipped, and (on a GPU) CuPy tests
    really ran."""
    line = (f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped "
            f"({summary['cupy_passed']} CuPy variants passed)")
    if summary["failed"]:
        return "failed", line
    if cupy_required and summary["cupy_passed"] == 0:
        return "failed", f"{line}: no CuPy test ran"
    return "passed", line


def has_gpu_variant(source: str) -> bool:
    """Whether a test file has a CuPy variant or a gpu mark: a test taking the `xp` fixture (numpy
    and cupy), a fixture parametrised with "cupy", or `pytest.mark.gpu`."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            if any(arg.arg == "xp" for arg in node.args.args):
                return True
        if isinstance(node, ast.Attribute) and node.attr == "gpu" and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "mark":
            return True
        if isinstance(node, ast.keyword) and node.arg == "params" and any(
                isinstance(c, ast.Constant) and c.value == "cupy" for c in ast.walk(node.value)):
            return True
    return False


def gpu_test_files(tests_root: Path) -> list[Path]:
    """Every test file under `tests_root` (its subfolders too) with a CuPy variant or a gpu mark."""
    return [path for path in sorted(tests_root.rglob("test_*.py")) if has_gpu_variant(path.read_text())]


def group_test_files(files: Sequence[Path], tests: Path) -> list[list[Path]]:
    """The files by folder, kernels first: each group is one pytest run whose results are written
    when it ends, so a phase stopped at its limit still reports the groups that finished."""
    folders: dict[str, list[Path]] = {}
    for path in files:
        folders.setdefault(path.relative_to(tests).parts[0], []).append(path)
    return [folders[name] for name in sorted(folders, key=lambda name: (name != "kernels", name))]


def merged_junit(xml_texts: Sequence[str]) -> str:
    """One <testsuites> holding every run's <testsuite> elements."""
    merged = ElementTree.Element("testsuites")
    for text in xml_texts:
        root = ElementTree.fromstring(text)
        merged.extend(root.iter("testsuite") if root.tag == "testsuites" else [root])
    return ElementTree.tostring(merged, encoding="unicode")


def tests_phase(ctx: PhaseContext) -> None:
    root = Path(insid3.__file__).resolve().parents[1]
    tests = root / "tests"
    if ctx.simulate:
        files, selection = [tests / name for name in SIMULATED_TEST_FILES], SIMULATED_TEST_SELECTION
    else:
        files, selection = gpu_test_files(tests) if tests.is_dir() else [], GPU_TEST_SELECTION
    if not files:
        ctx.write("error", f"no test files under {tests}: run from a checkout (pip install -e .)", {})
        return
    names = [str(f.relative_to(tests)) for f in files]
    reports: list[str] = []
    groups = group_test_files(files, tests)
    for number, group in enumerate(groups):
        junit = ctx.work / f"tests-junit-{number}.xml"
        junit.unlink(missing_ok=True)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-k", selection,
                   f"--junitxml={junit}", *map(str, group)]
        group_names = [str(f.relative_to(tests)) for f in group]
        try:
            subprocess.run(command, cwd=root, timeout=max(5.0, ctx.left() - 3.0), check=False)
        except subprocess.TimeoutExpired:
            _write_tests(ctx, reports, selection, names, f"stopped in {', '.join(group_names)}: the phase's time ran out")
            return
        if not junit.is_file():
            _write_tests(ctx, reports, selection, names, f"pytest wrote no junit report for {', '.join(group_names)}")
            return
        reports.append(junit.read_text())
        _write_tests(ctx, reports, selection, names, None if number + 1 < len(groups) else "")


def _write_tests(ctx: PhaseContext, reports: list[str], selection: str, names: list[str], problem: str | None) -> None:
    """The tests phase's result from the groups run so far. problem: None while groups remain,
    "" when all ran, else why the rest did not (the phase then ends "timed out" or "error")."""
    merged = merged_junit(reports)
    (ctx.out / JUNIT_FILE).write_text(merged)
    summary = junit_summary(merged)
    status, line = junit_verdict(summary, cupy_required=not ctx.simulate)
    if problem:
        status, line = ("timed out" if "time ran out" in problem else "error"), f"{line}; {problem}"
    lines = [f"`pytest -k \"{selection}\"` on {len(names)} files ({', '.join(names)}): {line}."]
    lines += [f"- FAILED {failure}" for failure in summary["failures"]]
    lines += [f"- skipped x{count}: {reason}" for reason, count in summary["skip_reasons"].items()]
    ctx.write(status, line, {**summary, "files": names}, lines)


PHASES: dict[str, Callable[[PhaseContext], None]] = {
    "preflight": preflight_phase, "export": export_phase, "tests": tests_phase, "parity": parity_phase,
    "rope": rope_phase, "side_by_side": side_by_side_phase, "compile": compile_phase,
}


@dataclass(frozen=True, kw_only=True)
class PhaseRunSettings:
    """One phase's process: its name, the run's folders, its result file and time limit."""

    phase: str
    work: Path
    out: Path
    result: Path
    seconds: float
    simulate_cpu: bool = False


def run(args: PhaseRunSettings) -> int:
    ctx = PhaseContext(work=args.work, out=args.out, result_file=args.result,
                       deadline=time.monotonic() + args.seconds, simulate=args.simulate_cpu)
    try:
        PHASES[args.phase](ctx)
    except Exception as exc:  # noqa: BLE001 - one phase's failure is its result, not the run's end
        ctx.write("error", f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:300]}", {})
        raise
    return 0


if __name__ == "__main__":  # how gpu_acceptance starts a phase: `insid3 bench gpu-phase` under this name
    from insid3.engine.cli.main import run_command

    sys.exit(run_command("gpu_phases", "bench", ["gpu-phase", *sys.argv[1:]]))
