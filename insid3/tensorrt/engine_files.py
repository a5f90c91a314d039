"""How engine files are named, and which of a bundle's engines this GPU and TensorRT can run.

A serialized engine runs only on the GPU model and TensorRT version it was built with, so both
are in its file name (the export writes it) and in its artifact's details (the runtime selects
by them).
"""

from __future__ import annotations

import re

from insid3.errors import BackendUnavailableError
from insid3.format.bundle import Artifact, Bundle
from insid3.tensorrt.versions import parse_version

_MEMORY_TOKENS = re.compile(r"^(\d+gb|hbm\w*|gddr\w*)$")


def gpu_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100': the part, without its memory size and type."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t and not _MEMORY_TOKENS.match(t)]
    return "-".join(tokens) or "gpu"


def _version_tag(trt_version: str) -> str:
    return "trt" + ".".join(str(p) for p in parse_version(trt_version))


def engine_file_name(precision: str, gpu_name: str, trt_version: str) -> str:
    """e.g. model.fp16.nvidia-h100.trt10.13.0.engine (the caller has validated `precision`)."""
    return f"model.{precision}.{gpu_slug(gpu_name)}.{_version_tag(trt_version)}.engine"


def timing_cache_file_name(gpu_name: str, trt_version: str) -> str:
    """Kernel timings of one GPU and TensorRT version: reusable across precisions and rebuilds."""
    return f"{gpu_slug(gpu_name)}.{_version_tag(trt_version)}.timing.cache"


def select_engine(bundle: Bundle, gpu_name: str, trt_version: str) -> Artifact:
    """The bundle's engine built for this GPU model and TensorRT version (engines are not portable)."""
    engines = bundle.tensorrt_engines()
    for artifact in engines:
        if artifact.details.get("gpu") == gpu_name and artifact.details.get("tensorrt") == trt_version:
            return artifact
    built_for = ", ".join(
        f"{a.file} ({a.details.get('gpu')}, TensorRT {a.details.get('tensorrt')})" for a in engines
    ) or "none"
    raise BackendUnavailableError(
        f"no engine in {bundle.folder} matches {gpu_name} with TensorRT {trt_version}; it holds {built_for}"
    )
