"""Reference-side state: everything that depends only on the references, computed once.

The authors' code re-encodes the reference with every target; here a `Reference` is built once
(per `set_reference`/`add_reference`, or per registered reference in the server) and reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from insid3 import kernels
from insid3.errors import SettingsError
from insid3.format.bundle import BASIS_FILE, ONNX_FILE, Bundle


@dataclass(frozen=True)
class EncodingFingerprint:
    """What a reference's arrays depend on: the backbone and positional basis of the bundle (by
    their sha256 in the bundle's metadata) and the debias frame (s basis vectors projected out).

    Two bundles exported from the same weights at the same resolution share a fingerprint, and
    their references are interchangeable; anything else would silently give wrong masks (or fail
    deep in a kernel), so `Segmenter` checks it before using a reference.
    """

    model_sha256: str
    basis_sha256: str
    resolution: int
    svd_components: int

    @classmethod
    def of(cls, bundle: Bundle, svd_components: int) -> "EncodingFingerprint":
        meta = bundle.metadata
        model, basis = meta.artifact("onnx"), meta.artifact("positional_basis")
        return cls(
            model_sha256=model.sha256 if model else f"unrecorded:{bundle.folder / ONNX_FILE}",
            basis_sha256=basis.sha256 if basis else f"unrecorded:{bundle.folder / BASIS_FILE}",
            resolution=meta.resolution,
            svd_components=svd_components,
        )

    def describe(self) -> str:
        return (
            f"model {self.model_sha256[:12]}, basis {self.basis_sha256[:12]}, "
            f"{self.resolution}px, svd_components={self.svd_components}"
        )

    def require_same(self, expected: "EncodingFingerprint") -> None:
        """SettingsError naming both encodings when this reference cannot serve `expected`'s Segmenter."""
        if self != expected:
            raise SettingsError(
                f"this reference was encoded with another bundle or debias frame ({self.describe()}) "
                f"than this Segmenter uses ({expected.describe()}): encode it again with this Segmenter"
            )


@dataclass(frozen=True)
class ReferenceShot:
    """One reference image: its debiased features and its downsampled mask, on the backend's device."""

    debiased: Any  # (N, D) float32: debiased features in the Segmenter's DebiasFrame coordinates
    patch_mask: Any  # (N,) bool: the h x w mask of doc §5, row-major


@dataclass(frozen=True)
class Reference:
    """S shots stacked for the matching kernels, plus their prototype (doc §5), and the
    fingerprint of the bundle and debias frame they were encoded with."""

    debiased: Any  # (S, N, D) DebiasFrame coordinates
    patch_masks: Any  # (S, N) bool
    prototype: Any  # (D,) same coordinates
    fingerprint: EncodingFingerprint

    @property
    def side(self) -> kernels.ReferenceSide:
        """The kernels' view of these shots (what §6 and §8 read of the references)."""
        return kernels.ReferenceSide(debiased=self.debiased, patch_masks=self.patch_masks, prototype=self.prototype)

    @property
    def shots(self) -> int:
        return int(self.debiased.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.debiased.nbytes + self.patch_masks.nbytes + self.prototype.nbytes)

    @classmethod
    def from_shots(cls, shots: tuple[ReferenceShot, ...], fingerprint: EncodingFingerprint) -> "Reference":
        if not shots:
            raise ValueError("a Reference needs at least one shot")
        xp = kernels.array_module(shots[0].debiased)
        debiased = xp.stack([shot.debiased for shot in shots])
        patch_masks = xp.stack([shot.patch_mask for shot in shots])
        return cls(
            debiased=debiased,
            patch_masks=patch_masks,
            prototype=kernels.prototype(debiased, patch_masks),
            fingerprint=fingerprint,
        )
