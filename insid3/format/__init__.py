"""insid3.format: what the export writes and the runtime reads, in one torch-free place.

The bundle schema (`bundle`), the algorithm's settings (`settings`) and the ONNX tensor names
(`tensors`). Both `insid3.export` and `insid3.engine` import from here and never from each
other, so the two sides cannot disagree on the format.
"""

from insid3.format.bundle import Artifact, Bundle, BundleMetadata, WeightsSource, load_bundle
from insid3.format.settings import Hyperparameters
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "Artifact",
    "Bundle",
    "BundleMetadata",
    "Hyperparameters",
    "WeightsSource",
    "load_bundle",
]
