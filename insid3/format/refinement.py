"""The mask refinement setting: how §9's R x R mask is finished (docs/crf.md).

"bilinear" (the default, as the authors') is §9 alone. "crf" is the authors' dense-CRF
refinement of a band around the R x R mask before the resize to the original size, the setting
behind their published COCO/LVIS numbers. Its lattice arithmetic is that of the library's CUDA
build the authors ran ("float32", the default) or of its CPU build ("float64").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from insid3.errors import SettingsError

REFINE_METHODS = ("bilinear", "crf")
LATTICE_PRECISIONS = ("float32", "float64")


@dataclass(frozen=True, kw_only=True)
class RefineSettings:
    """method: "bilinear" or "crf"; lattice_precision: the CRF lattice's arithmetic (float32 as
    the library's CUDA build, float64 as its CPU build)."""

    method: str = "bilinear"
    lattice_precision: str = "float32"

    def __post_init__(self) -> None:
        if self.method not in REFINE_METHODS:
            raise SettingsError(f"refine={self.method!r}: expected one of {', '.join(REFINE_METHODS)}")
        if self.lattice_precision not in LATTICE_PRECISIONS:
            raise SettingsError(
                f"CRF lattice precision {self.lattice_precision!r}: expected one of {', '.join(LATTICE_PRECISIONS)}"
            )

    @property
    def crf(self) -> bool:
        return self.method == "crf"

    @classmethod
    def of(cls, value: "str | RefineSettings | None") -> "RefineSettings":
        """A setting from a method name ("bilinear", "crf"), a setting, or None (the default)."""
        if value is None:
            return cls()
        if isinstance(value, RefineSettings):
            return value
        if isinstance(value, str):
            return cls(method=value)
        raise SettingsError(f"refine must be a method name or RefineSettings, got {type(value).__name__}")

    def describe(self) -> str:
        return f"crf (lattice {self.lattice_precision})" if self.crf else "bilinear"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RefineSettings":
        return cls(method=str(data["method"]), lattice_precision=str(data.get("lattice_precision", "float32")))

