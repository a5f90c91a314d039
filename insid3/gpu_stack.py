"""Whether the installed CUDA wheels fit this machine's driver: one line naming the mismatch.

CuPy, TensorRT and torch ship one wheel per CUDA major version (cupy-cuda12x / cupy-cuda13x,
tensorrt-cu12 / tensorrt-cu13, torch 2.x+cu128 / +cu130). A wheel built for a newer CUDA than
the driver supports cannot run at all; one built for an older CUDA runs on a newer driver only
where that older CUDA's runtime libraries are installed too, which a box set up for the newer
CUDA usually lacks. Both are named here, the first as blocking.

`check_stack` is pure (versions in, one line out) so every case is tested with injected
versions; `installed_stack` reads the real ones without importing CuPy, TensorRT or torch
(package metadata, and the driver's cuDriverGetVersion through ctypes).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Distributions whose name (or torch's local version tag) says which CUDA major they were built for.
CUDA_WHEELS = (
    "cupy-cuda11x", "cupy-cuda12x", "cupy-cuda13x",
    "tensorrt-cu11", "tensorrt-cu12", "tensorrt-cu13",
    "torch", "onnxruntime-gpu",
)
# PyPI's onnxruntime-gpu wheels by version: 1.19-1.26 for CUDA 12 (nvidia-cuda-runtime-cu12 in
# their `cuda` extra), 1.27 on for CUDA 13 (nvidia-cuda-runtime 13.x).
ORT_CUDA13_FROM = (1, 27)
ORT_CUDA12_FROM = (1, 19)
EXTRAS = {12: "gpu-cu12", 13: "gpu-cu13"}
_DRIVER_LIBRARIES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")


@dataclass(frozen=True)
class GpuStack:
    """What the check looks at: the driver's CUDA version and the CUDA-specific wheels."""

    driver_cuda: int | None  # cuDriverGetVersion: 1000 * major + 10 * minor (13000 = 13.0); None: no driver
    wheels: Mapping[str, str] = field(default_factory=dict)  # distribution name -> its version


@dataclass(frozen=True)
class StackMismatch:
    line: str  # one line: what is installed, what the driver supports, what to install
    blocking: bool  # a wheel needs a newer driver than this one: it cannot run at all


def cuda_version_text(version: int) -> str:
    """13000 -> '13.0', 12040 -> '12.4'."""
    return f"{version // 1000}.{version % 1000 // 10}"


def wheel_cuda_major(name: str, version: str) -> int | None:
    """The CUDA major a wheel was built for: cupy-cuda12x -> 12, tensorrt-cu13 -> 13,
    torch '2.11.0+cu130' -> 13, onnxruntime-gpu 1.31 -> 13; None where they do not say (a CPU torch)."""
    if name == "onnxruntime-gpu":
        release = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
        return 13 if release >= ORT_CUDA13_FROM else 12 if release >= ORT_CUDA12_FROM else None
    if name == "torch":
        match = re.search(r"\+cu(\d+?)(\d)$", version)  # cu130 -> 13, cu128 -> 12, cu118 -> 11
        return int(match.group(1)) if match else None
    match = re.fullmatch(r"cupy-cuda(\d\d)x|tensorrt-cu(\d\d)", name)
    return int(match.group(1) or match.group(2)) if match else None


def check_stack(stack: GpuStack) -> StackMismatch | None:
    """None when every CUDA-specific wheel fits the driver's CUDA major, else the mismatch."""
    if stack.driver_cuda is None:
        return None  # no driver: the backends say "no CUDA device" themselves
    driver_major = stack.driver_cuda // 1000
    built_for = {
        name: major for name, version in sorted(stack.wheels.items())
        if (major := wheel_cuda_major(name, version)) is not None and major != driver_major
    }
    if not built_for:
        return None
    wheels = ", ".join(f"{name} {stack.wheels[name]} is built for CUDA {major}" for name, major in built_for.items())
    blocking = any(major > driver_major for major in built_for.values())
    extra = EXTRAS.get(driver_major)
    fix = f"pip install 'insid3[{extra}]' after uninstalling those" if extra else "install wheels for this CUDA"
    consequence = (
        "they need a newer driver" if blocking
        else "they run only where that CUDA's runtime libraries are installed too"
    )
    return StackMismatch(
        line=f"the CUDA driver supports CUDA {cuda_version_text(stack.driver_cuda)} but {wheels}: "
             f"{consequence}; {fix}",
        blocking=blocking,
    )


def driver_cuda_version() -> int | None:
    """The driver's CUDA version (cuDriverGetVersion), None where no CUDA driver is installed."""
    for name in _DRIVER_LIBRARIES:
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        version = ctypes.c_int(0)
        if library.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
            return int(version.value)
    return None


def installed_stack() -> GpuStack:
    wheels = {}
    for name in CUDA_WHEELS:
        try:
            wheels[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return GpuStack(driver_cuda=driver_cuda_version(), wheels=wheels)


def stack_mismatch() -> StackMismatch | None:
    """`check_stack` on this machine."""
    return check_stack(installed_stack())
