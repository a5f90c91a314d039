"""How a patch mask becomes the returned mask: §9's upsampling, with the authors' dense-CRF
refinement of the R x R mask in between when it is switched on (docs/crf.md).

    bilinear  "upsample": (h, w) -> R x R -> (H, W), each bilinear > 0.5;  "refine": nothing
    crf       "upsample": (h, w) -> R x R;  "refine": the CRF on the R x R mask and the target's
              R x R pixels (kernels.crf.crf_refine), then R x R -> (H, W) bilinear > 0.5

Both stages are always entered, so every target's timings have the same keys (engine/runtime/timing.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from insid3 import kernels
from insid3.engine.runtime.timing import StageClock
from insid3.errors import SettingsError
from insid3.format.bundle import IMAGENET_MEAN, IMAGENET_STD
from insid3.format.refinement import RefineSettings
from insid3.kernels.arrays import array_module
from insid3.kernels.crf import CrfParameters, crf_refine, guide_image
from insid3.kernels.resize import threshold_bilinear


@dataclass(frozen=True, kw_only=True)
class Refiner:
    """Finishes masks at one bundle resolution R; mean and std undo the bundle's normalisation
    (the authors' CRF reads the target's pixels in [0, 1])."""

    resolution: int
    settings: RefineSettings = RefineSettings()
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def parameters(self) -> CrfParameters:
        """The CRF's numbers at R: stds 12 R / 512 and 4 R / 512 px, as the authors build it."""
        return CrfParameters.at_size(self.resolution, precision=self.settings.lattice_precision)

    def finish(self, patch_mask: Any, original_size: tuple[int, int], pixels: Any, clock: StageClock) -> np.ndarray:
        """The bool (H, W) host mask of a (h, w) bool patch mask; pixels: the target's (3, R, R)
        normalised float32 pixels (needed by the CRF only)."""
        if not self.settings.crf:
            with clock.stage("upsample"):
                mask = kernels.to_numpy(kernels.upsample_mask(patch_mask, self.resolution, original_size))
            with clock.stage("refine"):
                pass
            return mask
        if pixels is None:
            raise SettingsError("refine='crf' needs the target's pixels: pass pixels=PreparedImage.pixels to decode")
        with clock.stage("upsample"):
            square = threshold_bilinear(patch_mask, (self.resolution, self.resolution))
        with clock.stage("refine"):
            xp = array_module(square)
            guide = guide_image(xp.asarray(pixels), self.mean, self.std)
            refined = crf_refine(square, guide, self.parameters)
            mask = kernels.to_numpy(threshold_bilinear(refined, original_size))
        return mask

