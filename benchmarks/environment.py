"""The machine and software a benchmark ran on, for the JSON report (nothing is imported to ask)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

LIBRARIES = (
    "insid3", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "torch", "scikit-learn",
    "scipy", "fastcluster", "cupy-cuda12x", "tensorrt-cu12", "tensorrt", "pillow",
)


# CPU features that decide which backend and precision are fast (bf16 needs AVX512-BF16 or AMX).
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_features() -> list[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return []
    return [feature for feature in CPU_FEATURES if feature in flags]


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load: a shared, busy machine shows here (None where unsupported)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def gpus() -> list[dict[str, str]]:
    """Name, driver and memory of each NVIDIA GPU via nvidia-smi; [] where there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,persistence_mode"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keys = query.split(",")
    return [dict(zip(keys, (v.strip() for v in line.split(",")))) for line in out.strip().splitlines()]


def cuda_version() -> str | None:
    """The CUDA version the driver supports (nvidia-smi's header), None without a GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    marker = "CUDA Version:"
    return out.split(marker, 1)[1].split()[0] if marker in out else None


def environment(load_at_start: list[float] | None = None) -> dict:
    gpu_list = gpus()
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_features": cpu_features(),
        "load_average": {"start": load_at_start, "end": load_average()},
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpu": gpu_list[0]["name"] if gpu_list else None,
        "gpus": gpu_list,
        "driver": gpu_list[0]["driver_version"] if gpu_list else None,
        "cuda": cuda_version(),
        "libraries": library_versions(),
    }
