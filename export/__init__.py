"""insid3.export: DINOv3 ViT checkpoints -> engine bundles (ONNX, positional basis, TensorRT).

`import insid3.export` is cheap (no torch); the torch-backed names load on first use.
"""

from __future__ import annotations

if __name__ != "insid3.export":  # imported as `export` with the repository root on sys.path
    from insid3.shadowing import yield_to_installed

    yield_to_installed(__name__, __file__)


import importlib
from typing import TYPE_CHECKING

from insid3.export.config import SIZES, VitConfig

if TYPE_CHECKING:
    from insid3.export.backbone import build_backbone
    from insid3.export.pipeline import ExportSettings, default_out_dir, export_bundle

_LAZY = {
    "build_backbone": "insid3.export.backbone",
    "ExportSettings": "insid3.export.pipeline",
    "export_bundle": "insid3.export.pipeline",
    "default_out_dir": "insid3.export.pipeline",
}

__all__ = ["SIZES", "VitConfig", "build_backbone", "ExportSettings", "export_bundle", "default_out_dir"]
assert set(__all__) == {"SIZES", "VitConfig", *_LAZY}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'insid3.export' has no attribute {name!r}")
