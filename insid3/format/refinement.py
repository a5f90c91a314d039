"""The mask refinement setting: how §9's R x R mask is finished (docs/crf.md).

"bilinear" (the default, as the authors') is §9 alone. "crf" is the authors' dense-CRF
refinement of a band around the R x R mask before the resize to the original size, the setting
behind their published COCO/LVIS numbers. Its lattice arithmetic is that of the library's CUDA
build the authors ran ("float32", the default) or of its CPU build ("float64").
"""

from __future__ import annotations

import argparse
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


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """--refine and --crf-lattice, as every command spells them."""
    parser.add_argument("--refine", choices=REFINE_METHODS, default="bilinear",
                        help="mask refinement: the authors' bilinear upsampling, or their dense CRF on a band "
                             "around the mask's boundary (docs/crf.md; about 1 s per 1024 px target on 2 CPU cores)")
    parser.add_argument("--crf-lattice", choices=LATTICE_PRECISIONS, default="float32",
                        help="--refine crf: the lattice's arithmetic, float32 as the authors' CUDA run or float64 "
                             "as the library's CPU build")


def refine_from_args(args: argparse.Namespace) -> RefineSettings:
    return RefineSettings(method=args.refine, lattice_precision=args.crf_lattice)
