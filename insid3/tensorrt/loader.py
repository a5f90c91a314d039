"""Deserialise a TensorRT engine file: the first step of running one (see `runner`).

Written from TensorRT 10's Python API (Logger, Runtime.deserialize_cuda_engine); tensorrt is
imported here only, when an engine is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insid3.errors import BackendUnavailableError, BundleError


@dataclass(frozen=True)
class LoadedEngine:
    """A deserialised engine with the runtime and logger that made it, kept alive as long as it."""

    path: Path
    engine: Any  # tensorrt.ICudaEngine
    runtime: Any  # tensorrt.Runtime
    logger: Any  # tensorrt.Logger


def load_engine(path: Path) -> LoadedEngine:
    """Reads and deserialises `path`; one error naming the file when either step fails."""
    import tensorrt as trt

    path = Path(path)
    try:
        serialized = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"TensorRT engine {path} cannot be read: {exc.strerror or exc}") from exc
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} cannot deserialise {path} (an engine runs only on the GPU "
            "model and TensorRT version it was built with; TensorRT's log above says why)"
        )
    return LoadedEngine(path, engine, runtime, logger)
