"""§1 as the authors run it: every shot and the target prepared again for every target."""

from __future__ import annotations

import torch

from insid3.authors_way.model import AuthorsModel
from insid3.engine.images import ImageLike, PreparedImage, prepare_image, prepare_reference_mask


def preprocess_image(model: AuthorsModel, image: ImageLike) -> PreparedImage:
    """RGB, R x R (PIL bilinear), ImageNet-normalised CHW float32; the original (H, W) kept."""
    return prepare_image(image, model.resolution, model.mean, model.std)


def preprocess_shot(model: AuthorsModel, image: ImageLike, mask: ImageLike) -> tuple[PreparedImage, torch.Tensor]:
    """A reference image and its mask at R x R (nearest, > 0.5), the mask on the model's device."""
    prepared = preprocess_image(model, image)
    resized = prepare_reference_mask(mask, prepared.original_size, model.resolution)
    return prepared, torch.from_numpy(resized).to(model.device)
