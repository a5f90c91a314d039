"""Eager PyTorch through the export package: for development and comparisons, never `auto`.

It rebuilds the exact model the bundle was exported from (`metadata.arch` and
`metadata.weights`: the random seed, or the checkpoint file with its recorded sha256).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.format.bundle import Bundle


def unavailable_reason(bundle: Bundle, options: BackendOptions) -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install torch==2.13.0, then 'insid3[export]')"
    if options.precision != "fp32":
        return f"the torch backend runs fp32 only, not {options.precision}"
    return None


def runs_on_gpu_here(options: BackendOptions) -> bool:
    return False  # eager CPU execution


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, bundle: Bundle, options: BackendOptions) -> None:
        import torch

        from insid3.export import build_backbone

        super().__init__(bundle)
        meta = bundle.metadata
        self._torch = torch
        if options.num_threads:
            torch.set_num_threads(options.num_threads)
        self._model = build_backbone(meta.arch, meta.weights, resolution=meta.resolution)

    def _infer(self, pixel_values: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self._model(self._torch.from_numpy(pixel_values)).numpy()

    def _release(self) -> None:
        self._model = None


def load(bundle: Bundle, options: BackendOptions) -> TorchBackend:
    return TorchBackend(bundle, options)
