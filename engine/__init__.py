"""insid3.engine: the runtime (backends, the Segmenter pipeline, CLIs, server). No torch needed."""

if __name__ != "insid3.engine":  # imported as `engine` with the repository root on sys.path
    from insid3.shadowing import yield_to_installed

    yield_to_installed(__name__, __file__)

from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.segmenter import Segmenter
from insid3.format import Bundle, BundleMetadata, Hyperparameters, load_bundle

__all__ = ["Bundle", "BundleMetadata", "Hyperparameters", "Reference", "Segmenter", "load_bundle"]
