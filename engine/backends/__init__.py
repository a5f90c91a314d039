"""Backends by name, imported lazily: a backend's heavy library loads only when it is chosen.

`auto` picks the TensorRT engine on a GPU, else ONNX Runtime on CUDA, else the fastest CPU
backend installed (OpenVINO, then ONNX Runtime). `torch` runs the eager export model and is
never picked automatically: it is for development and comparisons.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

from insid3.engine.backends.base import Backend, BackendOptions
from insid3.format.bundle import Bundle
from insid3.errors import BackendUnavailableError

log = logging.getLogger("insid3.engine")


@dataclass(frozen=True)
class BackendEntry:
    name: str
    module: str  # module under insid3.engine.backends holding `unavailable_reason` and `load`

    def _module(self):
        return importlib.import_module(f"insid3.engine.backends.{self.module}")

    def unavailable_reason(self, bundle: Bundle, options: BackendOptions) -> str | None:
        return self._module().unavailable_reason(bundle, options)

    def load(self, bundle: Bundle, options: BackendOptions) -> Backend:
        return self._module().load(bundle, options)


BACKENDS: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry("tensorrt", "tensorrt_backend"),
        BackendEntry("onnxruntime", "onnxruntime_backend"),
        BackendEntry("openvino", "openvino_backend"),
        BackendEntry("torch", "torch_backend"),
    )
}
# auto's order of preference; each entry's own check decides whether it can run here.
AUTO_ORDER = ("tensorrt", "onnxruntime-cuda", "openvino", "onnxruntime")


def availability(bundle: Bundle, options: BackendOptions = BackendOptions()) -> dict[str, str | None]:
    """name -> None when it can run here, else the reason it cannot."""
    return {name: entry.unavailable_reason(bundle, options) for name, entry in BACKENDS.items()}


def _summary(reasons: dict[str, str | None]) -> str:
    usable = [name for name, why in reasons.items() if why is None]
    return f"available here: {', '.join(usable) or 'none'}"


def _auto(bundle: Bundle, options: BackendOptions) -> Backend:
    reasons = availability(bundle, options)
    for choice in AUTO_ORDER:
        if choice == "onnxruntime-cuda":
            ort = importlib.import_module("insid3.engine.backends.onnxruntime_backend")
            if reasons["onnxruntime"] is None and ort.cuda_available():
                return BACKENDS["onnxruntime"].load(bundle, options)
        elif reasons[choice] is None:
            return BACKENDS[choice].load(bundle, options)
    details = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    raise BackendUnavailableError(f"no backend can run this bundle here ({details})")


def load_backend(bundle: Bundle, name: str = "auto", options: BackendOptions = BackendOptions()) -> Backend:
    if name == "auto":
        backend = _auto(bundle, options)
    else:
        if name not in BACKENDS:
            raise BackendUnavailableError(
                f"unknown backend {name!r}: choose one of auto, {', '.join(BACKENDS)}"
            )
        entry = BACKENDS[name]
        reason = entry.unavailable_reason(bundle, options)
        if reason is not None:
            reasons = availability(bundle, options)
            raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason} ({_summary(reasons)})")
        backend = entry.load(bundle, options)
    log.info("backend %s on %s (%s)", backend.name, backend.device, backend.precision)
    return backend
