"""Which TensorRT is good enough, and whether it can run here (one check for export and runtime).

TensorRT >= 10.13: earlier 10.x releases miscompile DINOv3 ViTs (NVIDIA/TensorRT issues 4558,
4723, 4742). Device buffers and streams are CuPy's (see `runner`), so CuPy is required too.
"""

from __future__ import annotations

import re

MIN_TENSORRT = (10, 13)


def parse_version(text: str) -> tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0): major, minor, patch (the build number does not matter)."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def tensorrt_version() -> str:
    import tensorrt as trt

    return str(trt.__version__)


def _cuda_device_problem() -> str | None:
    try:
        import cupy
    except ImportError:
        return "cupy is not installed (the TensorRT runner's stream and device buffers are CuPy's)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy without a usable driver raises its own runtime error
        return f"no CUDA device is usable ({exc.__class__.__name__}: {exc})"
    return None if count > 0 else "no CUDA device is visible (cupy)"


def tensorrt_unavailable_reason() -> str | None:
    """None when engines can be built and run here, else the reason in a few words."""
    try:
        version = tensorrt_version()
    except ImportError:
        return "tensorrt is not installed"
    if parse_version(version) < MIN_TENSORRT:
        return (
            f"tensorrt {version} is installed, >= {'.'.join(map(str, MIN_TENSORRT))} is needed "
            "(10.x before 10.13 miscompile DINOv3 ViTs: NVIDIA/TensorRT issues 4558, 4723, 4742)"
        )
    return _cuda_device_problem()


def gpu_name(device_id: int = 0) -> str:
    """The CUDA device's model name as the driver reports it, e.g. 'NVIDIA H100 80GB HBM3'."""
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(device_id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)
