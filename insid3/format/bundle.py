"""The engine bundle: the folder ``insid3-export`` writes and every runtime part loads.

Layout::

    <bundle>/
      insid3.json                  metadata (BundleMetadata below)
      model.onnx                   pixel_values [B,3,R,R] f32 -> features [B,N,C] f32, L2-normalised
      positional_basis.npy         float32 (C, K), K = min(C, N): left singular vectors, in order (doc §3)
      model.<prec>.<gpu>.trt<ver>.engine   optional TensorRT engine (+ timing.cache)

This module is torch-free: the export stage writes metadata through it and the runtime reads
it, so the two can never disagree on the format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from insid3.errors import BundleError
from insid3.format.settings import Hyperparameters
from insid3.format.verify import sha256_of, verify_artifacts

FORMAT_VERSION = 1
METADATA_FILE = "insid3.json"
ONNX_FILE = "model.onnx"
BASIS_FILE = "positional_basis.npy"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsSource:
    """Where the backbone weights came from: a checkpoint (with its sha256) or a seeded random init."""

    kind: str  # "meta-hub" | "huggingface" | "random-init"
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Artifact:
    """One file of the bundle, with how faithfully it reproduces the torch model."""

    kind: str  # "onnx" | "tensorrt" | "positional_basis" | "timing_cache"
    file: str  # relative to the bundle folder
    precision: str  # "fp32" | "fp16" | "bf16"
    bytes: int
    sha256: str
    # e.g. {"against": "torch", "max_abs_error": 3e-6, "min_cosine": 0.99999}
    parity: dict | None = None
    # e.g. {"gpu": "NVIDIA H100", "tensorrt": "10.13.0", "max_batch": 8}
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BundleMetadata:
    size: str  # "small" | "base" | "large"
    arch: str  # e.g. "dinov3_vits16"
    resolution: int  # R: the square input side in pixels
    patch_size: int
    embed_dim: int  # C
    patch_grid: tuple[int, int]  # (h, w) = (R / p, R / p)
    defaults: Hyperparameters
    weights: WeightsSource
    opset: int
    artifacts: tuple[Artifact, ...]
    tool_version: str
    created_at: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    format_version: int = FORMAT_VERSION

    @property
    def num_patches(self) -> int:
        return self.patch_grid[0] * self.patch_grid[1]

    def artifact(self, kind: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.kind == kind), None)

    def with_artifacts(self, artifacts: tuple[Artifact, ...]) -> "BundleMetadata":
        return replace(self, artifacts=artifacts)

    def to_json(self) -> dict:
        data = asdict(self)
        data["patch_grid"] = list(self.patch_grid)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "BundleMetadata":
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version!r} is not supported (this insid3 reads version "
                f"{FORMAT_VERSION}): re-export it with this version's insid3-export"
            )
        try:
            return cls(
                size=data["size"],
                arch=data["arch"],
                resolution=int(data["resolution"]),
                patch_size=int(data["patch_size"]),
                embed_dim=int(data["embed_dim"]),
                patch_grid=(int(data["patch_grid"][0]), int(data["patch_grid"][1])),
                defaults=Hyperparameters.from_json(data["defaults"]),
                weights=WeightsSource(**data["weights"]),
                opset=int(data["opset"]),
                artifacts=tuple(Artifact(**a) for a in data["artifacts"]),
                tool_version=data["tool_version"],
                created_at=data["created_at"],
                mean=tuple(data["mean"]),
                std=tuple(data["std"]),
                format_version=version,
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise BundleError(f"{METADATA_FILE} is malformed: {exc!r}") from exc


def describe_file(folder: Path, file: str, **fields) -> Artifact:
    """An Artifact for a file already written into the bundle folder."""
    path = folder / file
    return Artifact(file=file, bytes=path.stat().st_size, sha256=sha256_of(path), **fields)


def write_metadata(folder: Path, metadata: BundleMetadata) -> Path:
    path = Path(folder) / METADATA_FILE
    path.write_text(json.dumps(metadata.to_json(), indent=2) + "\n")
    return path


@dataclass(frozen=True)
class Bundle:
    """A validated bundle folder: metadata plus paths to its artifacts."""

    folder: Path
    metadata: BundleMetadata

    @property
    def onnx_path(self) -> Path:
        return self.folder / ONNX_FILE

    @property
    def basis_path(self) -> Path:
        return self.folder / BASIS_FILE

    def tensorrt_engines(self) -> list[Artifact]:
        return [a for a in self.metadata.artifacts if a.kind == "tensorrt"]

    def positional_basis(self) -> np.ndarray:
        """(C, K) float32, K = min(C, N): columns are the left singular vectors in order."""
        try:
            basis = np.load(self.basis_path)
        except Exception as exc:  # noqa: BLE001 - numpy raises several types on a damaged .npy
            raise BundleError(
                f"{self.basis_path} cannot be read ({exc.__class__.__name__}: {exc}): the file is "
                "damaged; re-export the bundle"
            ) from None
        c, k = self.metadata.embed_dim, min(self.metadata.embed_dim, self.metadata.num_patches)
        if basis.dtype != np.float32 or basis.shape != (c, k):
            raise BundleError(
                f"{self.basis_path}: expected float32 ({c}, {k}), got {basis.dtype} {basis.shape}"
            )
        return basis


def load_bundle(folder: str | Path, *, verify: bool = True) -> Bundle:
    """The bundle at `folder`, every recorded artifact checked by size and sha256 (verify.py)."""
    folder = Path(folder)
    if folder.is_file():
        raise BundleError(f"{folder} is a file: a bundle is the folder insid3-export writes")
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist")
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise BundleError(f"{folder} is not an insid3 bundle: {METADATA_FILE} is missing")
    try:
        data = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path} is not valid JSON: {exc}") from exc
    metadata = BundleMetadata.from_json(data)
    missing = [name for name in (ONNX_FILE, BASIS_FILE) if not (folder / name).is_file()]
    missing += [a.file for a in metadata.artifacts if not (folder / a.file).is_file()]
    if missing:
        raise BundleError(f"bundle {folder} is incomplete: missing {', '.join(sorted(set(missing)))}")
    if verify:
        verify_artifacts(folder, metadata.artifacts)
    return Bundle(folder=folder, metadata=metadata)
