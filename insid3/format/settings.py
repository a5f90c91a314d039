"""Frozen settings of the algorithm, serialised into the bundle metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from insid3.errors import SettingsError


@dataclass(frozen=True)
class Hyperparameters:
    """INSID3's three knobs (algorithm doc §3, §7, §8).

    svd_components: positional-basis vectors projected out (s, must be < C).
    tau: clustering similarity threshold; clusters merge while average distance < 1 - tau.
    merge_threshold: a cluster joins the mask when cross * intra * area weight exceeds it.
    """

    svd_components: int
    tau: float = 0.6
    merge_threshold: float = 0.2

    def validated(self, embed_dim: int) -> "Hyperparameters":
        if not 0 <= self.svd_components < embed_dim:
            raise SettingsError(
                f"svd_components={self.svd_components} must be in [0, {embed_dim}) for an "
                f"embedding width of {embed_dim}: with s >= C every feature projects to zero"
            )
        if not 0.0 < self.tau <= 1.0:
            raise SettingsError(f"tau={self.tau} must be in (0, 1]")
        if not -1.0 <= self.merge_threshold <= 1.0:
            raise SettingsError(f"merge_threshold={self.merge_threshold} must be in [-1, 1]")
        return self

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Hyperparameters":
        return cls(
            svd_components=int(data["svd_components"]),
            tau=float(data["tau"]),
            merge_threshold=float(data["merge_threshold"]),
        )
