"""What an operator may set on `insid3-serve`: batching, queue, cache and upload limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from insid3.errors import SettingsError
from insid3.format.refinement import RefineSettings


@dataclass(frozen=True)
class ServeSettings:
    """Serving knobs; `validated()` names the first one out of range.

    max_batch: targets per backbone call (1 turns batching off).
    max_wait_ms: how long the oldest waiting target may wait for others to join its batch.
    max_queue: targets admitted but not yet sent to the backbone; one more gets 503.
    reference_ttl_s: a registered reference expires this long after registration.
    max_references / max_reference_bytes: the device-resident cache's bounds (LRU eviction).
    max_shots: image/mask pairs one registration may carry.
    max_upload_bytes: a request body larger than this gets 413 before it is parsed.
    max_image_pixels: an image (or mask) with more pixels gets 413 before it is decoded.
    """

    backend: str = "auto"
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    reference_ttl_s: float = 3600.0
    max_references: int = 256
    max_reference_bytes: int = 2 << 30
    max_shots: int = 16
    max_upload_bytes: int = 32 << 20
    max_image_pixels: int = 40_000_000
    refine: str = "bilinear"  # mask refinement of every request: "bilinear" or "crf" (docs/crf.md)
    crf_lattice: str = "float32"  # the CRF lattice's arithmetic

    @property
    def refine_settings(self) -> RefineSettings:
        return RefineSettings(method=self.refine, lattice_precision=self.crf_lattice)

    def validated(self) -> "ServeSettings":
        positive_ints = ("max_batch", "max_queue", "max_references", "max_reference_bytes", "max_shots",
                         "max_upload_bytes", "max_image_pixels")
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_wait_ms < 0:
            raise SettingsError(f"max_wait_ms={self.max_wait_ms} must be >= 0")
        if self.reference_ttl_s <= 0:
            raise SettingsError(f"reference_ttl_s={self.reference_ttl_s} must be > 0")
        RefineSettings(method=self.refine, lattice_precision=self.crf_lattice)  # a SettingsError names a bad one
        return self

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1e3

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ServeSettings":
        known = cls.__dataclass_fields__
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SettingsError(f"unknown serve setting(s): {', '.join(unknown)}")
        return cls(**{name: type(getattr(cls, name))(value) for name, value in data.items()}).validated()
