"""§1 as the authors run it: every shot and the target prepared again for every target."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from insid3.authors_way.model import AuthorsModel
from insid3.engine.runtime.images import ImageLike, PreparedImage, load_mask, prepare_image


def preprocess_image(model: AuthorsModel, image: ImageLike) -> PreparedImage:
    """RGB, R x R (PIL bilinear), ImageNet-normalised CHW float32; the original (H, W) kept."""
    return prepare_image(image, model.resolution, model.mean, model.std)


def preprocess_shot(model: AuthorsModel, image: ImageLike, mask: ImageLike) -> tuple[PreparedImage, torch.Tensor]:
    """A reference image and its mask at R x R (torch's nearest, > 0.5), on the model's device."""
    prepared = preprocess_image(model, image)
    full = torch.from_numpy(load_mask(mask)).float()[None, None]
    resized = F.interpolate(full, size=(model.resolution, model.resolution), mode="nearest")[0, 0] > 0.5
    return prepared, resized.to(model.device)
