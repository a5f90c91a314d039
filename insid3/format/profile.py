"""A calibration profile: the settings `insid3 calibrate` chose on a user's labelled examples.

    {"kind": "insid3-profile", "version": 1,
     "hyperparameters": {"svd_components": 188, "tau": 0.6, "merge_threshold": 0.2},
     "refine": {"method": "bilinear", "lattice_precision": "float32"},
     "min_score": {"threshold": 0.41, "score": "seed_similarity", "false_positive_rate": 0.1, "miss_rate": 0.05},
     "bundle": {"model_sha256": "...", "basis_sha256": "...", "resolution": 768, "arch": "dinov3_vits16"},
     "calibration": {"source": "...", "concepts": [...], "episodes": 40, "shots": 1, "seed": 0,
                     "miou": 61.2, "default_miou": 55.0, ...}}

A profile is only valid for the backbone and positional basis it was measured with: features
of another model or basis make other masks, so `Profile.require_bundle` refuses it in one line.
`min_score` is null when the calibration had no negatives to separate present from absent.
Torch-free: the CLIs, the server and the web page read it without the runtime.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from insid3.errors import Insid3Error
from insid3.format.bundle import BASIS_FILE, ONNX_FILE, Bundle
from insid3.format.refinement import RefineSettings
from insid3.format.settings import Hyperparameters
from insid3.format.verify import sha256_of

KIND = "insid3-profile"
VERSION = 1


class ProfileError(Insid3Error):
    """A profile file that cannot be read, or one calibrated for another bundle."""


@dataclass(frozen=True)
class BundleIdentity:
    """What a profile's numbers depend on: the backbone and basis (sha256) at one resolution."""

    model_sha256: str
    basis_sha256: str
    resolution: int
    arch: str = ""

    @classmethod
    def of(cls, bundle: Bundle) -> "BundleIdentity":
        meta = bundle.metadata
        model, basis = meta.artifact("onnx"), meta.artifact("positional_basis")
        return cls(
            model_sha256=model.sha256 if model else f"unrecorded:{bundle.folder / ONNX_FILE}",
            basis_sha256=basis.sha256 if basis else f"unrecorded:{bundle.folder / BASIS_FILE}",
            resolution=meta.resolution, arch=meta.arch,
        )

    def same_encoder(self, other: "BundleIdentity") -> bool:
        return (self.model_sha256, self.basis_sha256, self.resolution) == (
            other.model_sha256, other.basis_sha256, other.resolution)

    def describe(self) -> str:
        return f"{self.arch or 'model'} {self.model_sha256[:12]}, basis {self.basis_sha256[:12]}, {self.resolution}px"


@dataclass(frozen=True)
class ScoreThreshold:
    """The score below which a concept is judged absent, and how it did on the calibration data."""

    threshold: float
    score: str  # which per-mask score it thresholds
    false_positive_rate: float  # absent targets still judged present
    miss_rate: float  # present targets judged absent

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "score": self.score,
                "false_positive_rate": self.false_positive_rate, "miss_rate": self.miss_rate}

    @classmethod
    def from_json(cls, data: dict) -> "ScoreThreshold":
        return cls(threshold=float(data["threshold"]), score=str(data["score"]),
                   false_positive_rate=float(data["false_positive_rate"]), miss_rate=float(data["miss_rate"]))


@dataclass(frozen=True)
class Profile:
    hyperparameters: Hyperparameters
    bundle: BundleIdentity
    refine: RefineSettings = RefineSettings()
    min_score: ScoreThreshold | None = None
    calibration: dict = field(default_factory=dict)  # the data and run it was calibrated on (for the reader)

    def require_bundle(self, bundle: Bundle, where: str = "profile") -> None:
        """ProfileError, one line, unless `bundle` has the backbone and basis this profile was made for."""
        here = BundleIdentity.of(bundle)
        if not self.bundle.same_encoder(here):
            raise ProfileError(
                f"{where} was calibrated for another bundle ({self.bundle.describe()}), not {bundle.folder} "
                f"({here.describe()}): run insid3 calibrate with this bundle"
            )

    def to_json(self) -> dict:
        return {
            "kind": KIND, "version": VERSION,
            "hyperparameters": self.hyperparameters.to_json(),
            "refine": self.refine.to_json(),
            "min_score": None if self.min_score is None else self.min_score.to_json(),
            "bundle": {"model_sha256": self.bundle.model_sha256, "basis_sha256": self.bundle.basis_sha256,
                       "resolution": self.bundle.resolution, "arch": self.bundle.arch},
            "calibration": self.calibration,
        }

    @classmethod
    def from_json(cls, data: object, where: str = "profile") -> "Profile":
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ProfileError(f"{where} is not an insid3 profile (insid3 calibrate writes them)")
        if data.get("version") != VERSION:
            raise ProfileError(f"{where} is profile version {data.get('version')!r}; this insid3 reads version {VERSION}")
        try:
            bundle = data["bundle"]
            return cls(
                hyperparameters=Hyperparameters.from_json(data["hyperparameters"]),
                bundle=BundleIdentity(model_sha256=str(bundle["model_sha256"]), basis_sha256=str(bundle["basis_sha256"]),
                                      resolution=int(bundle["resolution"]), arch=str(bundle.get("arch", ""))),
                refine=RefineSettings.from_json(data.get("refine") or {"method": "bilinear"}),
                min_score=None if data.get("min_score") is None else ScoreThreshold.from_json(data["min_score"]),
                calibration=dict(data.get("calibration") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{where} is malformed: {exc!r}") from None

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        return path


def read_profile(path: str | Path) -> Profile:
    """The profile at `path` (ProfileError naming the file when it is missing or not a profile)."""
    path = Path(path)
    where = f"profile {path}"
    if not path.is_file():
        raise ProfileError(f"{where} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProfileError(f"{where} cannot be read: {str(exc).splitlines()[0]}") from None
    return Profile.from_json(data, where)


def profile_record(path: str | Path) -> dict:
    """What a job manifest records of the profile it used: the file and its sha256."""
    return {"file": str(path), "sha256": sha256_of(Path(path))}
