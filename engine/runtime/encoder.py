"""Images into backbone features: doc §1 (pre-processing at the bundle's resolution) and §2 (the
backend's forward pass), shared by the segmentation path (`Segmenter`) and keypoint matching
(`Matcher`) so that both count the images they encode in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from insid3.engine.runtime.backends.base import Backend
from insid3.engine.runtime.images import ImageLike, PreparedImage, prepare_image
from insid3.format.bundle import Bundle


class ImageEncoder:
    """A bundle's pre-processing and a backend's features. images_encoded: how many images went
    through the backbone for references and for targets (the proof that references are encoded
    once, however many targets follow)."""

    def __init__(self, bundle: Bundle, backend: Backend) -> None:
        self.bundle = bundle
        self.backend = backend
        self.images_encoded = {"reference": 0, "target": 0}

    def prepare(self, image: ImageLike) -> PreparedImage:
        meta = self.bundle.metadata
        return prepare_image(image, meta.resolution, meta.mean, meta.std)

    def encode(self, prepared: Sequence[PreparedImage], role: str = "target") -> Any:
        """Backbone features (B, N, C) in the backend's array module, in chunks of its max batch."""
        step = self.backend.max_batch or len(prepared)
        parts = [
            self.backend.features(np.stack([p.pixels for p in prepared[i : i + step]]))
            for i in range(0, len(prepared), step)
        ]
        self.images_encoded[role] += len(prepared)
        return parts[0] if len(parts) == 1 else self.backend.xp.concatenate(parts)
