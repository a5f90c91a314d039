"""insid3.engine: the runtime (backends, the Segmenter pipeline, CLIs, server). No torch needed."""

from insid3.engine.reference import Reference
from insid3.engine.segmenter import Segmenter
from insid3.format import Bundle, BundleMetadata, Hyperparameters, load_bundle

__all__ = ["Bundle", "BundleMetadata", "Hyperparameters", "Reference", "Segmenter", "load_bundle"]
