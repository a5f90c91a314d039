"""Reference-side state: everything that depends only on the references, computed once.

The authors' code re-encodes the reference with every target; here a `Reference` is built once
(per `set_reference`/`add_reference`, or per registered reference in the server) and reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from insid3 import kernels


@dataclass(frozen=True)
class ReferenceShot:
    """One reference image: its debiased features and its downsampled mask, on the backend's device."""

    debiased: Any  # (N, D) float32: debiased features in the Segmenter's DebiasFrame coordinates
    patch_mask: Any  # (N,) bool: the h x w mask of doc §5, row-major


@dataclass(frozen=True)
class Reference:
    """S shots stacked for the matching kernels, plus their prototype (doc §5)."""

    debiased: Any  # (S, N, D) DebiasFrame coordinates
    patch_masks: Any  # (S, N) bool
    prototype: Any  # (D,) same coordinates

    @property
    def shots(self) -> int:
        return int(self.debiased.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.debiased.nbytes + self.patch_masks.nbytes + self.prototype.nbytes)

    @classmethod
    def from_shots(cls, shots: tuple[ReferenceShot, ...]) -> "Reference":
        if not shots:
            raise ValueError("a Reference needs at least one shot")
        xp = kernels.array_module(shots[0].debiased)
        debiased = xp.stack([shot.debiased for shot in shots])
        patch_masks = xp.stack([shot.patch_mask for shot in shots])
        return cls(debiased=debiased, patch_masks=patch_masks, prototype=kernels.prototype(debiased, patch_masks))
