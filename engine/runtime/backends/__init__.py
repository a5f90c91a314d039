"""Backends by name, imported lazily: a backend's heavy library loads only when it is chosen.

`auto` takes, among the backends that can run here, those that run on a GPU first, each group
in the entries' `auto_rank` order: TensorRT on a GPU, then ONNX Runtime on CUDA, then torch on
CUDA (`torch-cuda`), then OpenVINO, then ONNX Runtime on the CPU. `torch` runs the eager export
model on the CPU and is never picked automatically: it is for development and comparisons.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.errors import BackendUnavailableError, BundleError, Insid3Error
from insid3.format.bundle import Bundle

log = logging.getLogger("insid3.engine")


@dataclass(frozen=True)
class BackendEntry:
    name: str
    module: str  # under insid3.engine.runtime.backends, holding unavailable_reason, runs_on_gpu_here, load
    auto_rank: int | None  # auto's order within the GPU and then the CPU group; None: never auto

    def _module(self):
        return importlib.import_module(f"insid3.engine.runtime.backends.{self.module}")

    def unavailable_reason(self, bundle: Bundle, options: BackendOptions) -> str | None:
        return self._module().unavailable_reason(bundle, options)

    def runs_on_gpu_here(self, options: BackendOptions) -> bool:
        """Whether it would run on a GPU here (asked only of entries that can run here)."""
        return self._module().runs_on_gpu_here(options)

    def load(self, bundle: Bundle, options: BackendOptions) -> Backend:
        return self._module().load(bundle, options)


BACKENDS: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry("tensorrt", "tensorrt_backend", auto_rank=0),
        BackendEntry("onnxruntime", "onnxruntime_backend", auto_rank=2),
        BackendEntry("openvino", "openvino_backend", auto_rank=1),
        BackendEntry("torch", "torch_backend", auto_rank=None),
        BackendEntry("torch-cuda", "torch_cuda_backend", auto_rank=3),  # GPU only: after ONNX Runtime on CUDA
    )
}


def availability(bundle: Bundle, options: BackendOptions = BackendOptions()) -> dict[str, str | None]:
    """name -> None when it can run here, else the reason it cannot."""
    return {name: entry.unavailable_reason(bundle, options) for name, entry in BACKENDS.items()}


def auto_order(reasons: dict[str, str | None], options: BackendOptions) -> list[str]:
    """The backends auto would try, best first: those that can run here and take part in auto,
    GPU ones before CPU ones, each group by `auto_rank`."""
    candidates = [
        entry for name, entry in BACKENDS.items()
        if reasons[name] is None and entry.auto_rank is not None
    ]
    candidates.sort(key=lambda entry: (not entry.runs_on_gpu_here(options), entry.auto_rank))
    return [entry.name for entry in candidates]


def _summary(reasons: dict[str, str | None]) -> str:
    usable = [name for name, why in reasons.items() if why is None]
    return f"available here: {', '.join(usable) or 'none'}"


def _auto(bundle: Bundle, options: BackendOptions) -> Backend:
    reasons = availability(bundle, options)
    order = auto_order(reasons, options)
    if not order:
        details = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        raise BackendUnavailableError(f"no backend can run this bundle here ({details})")
    return _load(BACKENDS[order[0]], bundle, options)


def _load(entry: BackendEntry, bundle: Bundle, options: BackendOptions) -> Backend:
    """The entry's backend; a library that cannot read the bundle's model is a BundleError."""
    try:
        return entry.load(bundle, options)
    except Insid3Error:
        raise
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime, OpenVINO and TensorRT raise their own types
        first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise BundleError(
            f"bundle {bundle.folder}: the {entry.name} backend cannot load its model "
            f"({exc.__class__.__name__}: {first_line[:300]}): re-export the bundle with this insid3"
        ) from exc


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
        backend = _load(entry, bundle, options)
    log.info("backend %s on %s (%s)", backend.name, backend.device, backend.precision)
    return backend
