"""insid3.engine: the runtime (backends, the Segmenter pipeline), jobs, server and the `insid3` command.
No torch needed. Its public names load on first use, so the command's entry (insid3.engine.cli.main)
starts without importing the runtime."""

if __name__ != "insid3.engine":  # imported as `engine` with the repository root on sys.path
    from insid3.shadowing import yield_to_installed

    yield_to_installed(__name__, __file__)

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from insid3.engine.runtime.reference import Reference
    from insid3.engine.runtime.segmenter import Segmenter
    from insid3.format import Bundle, BundleMetadata, Hyperparameters, load_bundle

_LAZY = {
    "Reference": "insid3.engine.runtime.reference",
    "Segmenter": "insid3.engine.runtime.segmenter",
    "Bundle": "insid3.format",
    "BundleMetadata": "insid3.format",
    "Hyperparameters": "insid3.format",
    "load_bundle": "insid3.format",
}

__all__ = ["Bundle", "BundleMetadata", "Hyperparameters", "Reference", "Segmenter", "load_bundle"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
