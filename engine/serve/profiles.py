"""Calibration profiles per reference: `POST /v1/references` with a `profile` field (the JSON
`insid3 calibrate` writes, docs/calibration.md) segments every target of that reference with the
profile's settings, as `insid3 segment --profile` would.

    ReferenceProfile   what a profile sets for one reference: the engine's settings (svd_components,
                       tau, merge_threshold, refinement) and its score threshold (min_score)
    ProfiledReference  a registered Reference and the profile it was encoded under

A reference is encoded under its profile's debias frame once, at registration; each target is
debiased and clustered by an engine of the same settings (EngineRunner.engine, one per distinct
settings, cached), from the same backbone features as every other target of its batch. Nothing
is re-encoded per request. A concept whose score is below its reference's min_score is judged
absent: its mask is emptied and its quality record says so (`min_score`, `absent`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from insid3.engine.runtime.concepts import ConceptMask, ConceptsResult
from insid3.engine.runtime.quality import MaskQuality, quality_json
from insid3.engine.runtime.reference import Reference
from insid3.engine.serve.errors import BadRequestError
from insid3.errors import Insid3Error
from insid3.format.bundle import Bundle
from insid3.format.profile import BundleIdentity, Profile, ProfileError
from insid3.format.refinement import RefineSettings
from insid3.format.settings import Hyperparameters


@dataclass(frozen=True)
class EngineSettings:
    """What a Segmenter's masks depend on besides the bundle: one engine per distinct value."""

    hyperparameters: Hyperparameters
    refine: RefineSettings

    def describe(self) -> str:
        h = self.hyperparameters
        return (f"svd_components={h.svd_components}, tau={h.tau:g}, merge_threshold={h.merge_threshold:g}, "
                f"refine={self.refine.method}")


@dataclass(frozen=True)
class ReferenceProfile:
    """The settings one registered reference is segmented with, from its profile."""

    settings: EngineSettings
    min_score: float | None  # below it the concept is judged absent (None: never)
    bundle: BundleIdentity  # what the profile was calibrated for (the server's: checked at registration)

    @classmethod
    def of(cls, profile: Profile) -> "ReferenceProfile":
        return cls(settings=EngineSettings(profile.hyperparameters, profile.refine),
                   min_score=None if profile.min_score is None else profile.min_score.threshold,
                   bundle=profile.bundle)

    def to_json(self) -> dict[str, Any]:
        """What the registration answers: the settings that will apply."""
        return {"hyperparameters": self.settings.hyperparameters.to_json(), "refine": self.settings.refine.to_json(),
                "min_score": self.min_score,
                "bundle": {"model_sha256": self.bundle.model_sha256, "basis_sha256": self.bundle.basis_sha256,
                           "resolution": self.bundle.resolution, "arch": self.bundle.arch}}


def uploaded_profile(data: bytes | str, bundle: Bundle) -> ReferenceProfile:
    """The profile a client sent, checked against the server's bundle: BadRequestError in one line
    when it is no profile or was calibrated for another bundle."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequestError(f"profile is not JSON: {str(exc).splitlines()[0]}") from None
    try:
        profile = Profile.from_json(parsed, "profile")
        profile.hyperparameters.validated(bundle.metadata.embed_dim)
    except Insid3Error as exc:  # ProfileError, or a SettingsError naming the value out of range
        raise BadRequestError(str(exc) if isinstance(exc, ProfileError) else f"profile: {exc}") from None
    here = BundleIdentity.of(bundle)
    if not profile.bundle.same_encoder(here):
        raise BadRequestError(f"profile was calibrated for another bundle ({profile.bundle.describe()}), not this "
                              f"server's ({here.describe()}): run insid3 calibrate with the server's bundle")
    return ReferenceProfile.of(profile)


@dataclass(frozen=True)
class ProfiledReference:
    """A registered reference encoded under its profile's debias frame, with that profile."""

    reference: Reference
    profile: ReferenceProfile

    @property
    def shots(self) -> int:
        return self.reference.shots

    @property
    def nbytes(self) -> int:
        return self.reference.nbytes


def split(found: Reference | ProfiledReference) -> tuple[Reference, ReferenceProfile | None]:
    """A stored reference as (its Reference, its profile or None)."""
    if isinstance(found, ProfiledReference):
        return found.reference, found.profile
    return found, None


def judged(concept: ConceptMask, min_score: float | None) -> ConceptMask:
    """The concept, emptied when its score is below min_score (judged absent; its record kept)."""
    if min_score is None or concept.quality is None or concept.quality.score >= min_score:
        return concept
    return concept.emptied()


def judged_all(result: ConceptsResult, min_scores: dict[str, float | None]) -> ConceptsResult:
    """`judged` for each concept with its own threshold."""
    if all(value is None for value in min_scores.values()):
        return result
    return replace(result, concepts=tuple(judged(c, min_scores.get(c.name)) for c in result.concepts))


def answer_quality(quality: MaskQuality, min_score: float | None) -> dict[str, Any]:
    """The quality JSON of an answer; with a threshold, also `min_score` and `absent` (emptied)."""
    record = quality_json(quality)
    if min_score is None:
        return record  # as without profiles, byte for byte
    return {**record, "min_score": min_score, "absent": bool(quality.score < min_score)}
