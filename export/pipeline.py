"""export_bundle: checkpoint (or seeded random init) -> a complete engine bundle folder.

Steps: weights -> ONNX (+ graph checks) -> ONNX Runtime parity -> positional basis ->
[TensorRT engine + parity] -> insid3.json. Each step reports one progress line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import insid3
from insid3.errors import SettingsError
from insid3.export.config import SIZES, VitConfig, default_svd_components, validate_resolution
from insid3.export.onnx_export import DEFAULT_OPSET, ONNX_TOLERANCE, validate_opset
from insid3.export.tensorrt_build import validate_max_batch, validate_precision
from insid3.format.bundle import (
    BASIS_FILE,
    ONNX_FILE,
    Artifact,
    BundleMetadata,
    WeightsSource,
    describe_file,
    write_metadata,
)
from insid3.format.settings import Hyperparameters
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME

Report = Callable[[str], None]


@dataclass(frozen=True)
class ExportSettings:
    """What to export and where. Exactly one of `weights` and `random_init`."""

    model: VitConfig
    resolution: int
    out_dir: Path
    weights: Path | None = None  # a Meta hub .pth or a Hugging Face folder
    random_init: bool = False
    seed: int = 0
    trt: bool | None = None  # None: build an engine when TensorRT and a CUDA device are present
    precision: str = "fp16"
    max_batch: int = 8
    opset: int = DEFAULT_OPSET
    force: bool = False
    onnx_tolerance: float = ONNX_TOLERANCE
    # One factor per block for the positional basis's RoPE coordinates (export/positional_basis.py);
    # None: the eval-mode basis. `rope_rescale_source` says where they came from (metadata).
    rope_rescale: tuple[float, ...] | None = None
    rope_rescale_source: str | None = None

    def validated(self) -> "ExportSettings":
        validate_resolution(self.resolution, self.model.patch_size)
        if (self.weights is None) == (not self.random_init):
            raise SettingsError("give exactly one of --weights PATH and --random-init")
        validate_opset(self.opset)
        validate_precision(self.precision)
        validate_max_batch(self.max_batch)
        if self.seed < 0:
            raise SettingsError(f"seed {self.seed} must be >= 0")
        return self


def default_out_dir(config: VitConfig, resolution: int) -> Path:
    """bundles/dinov3-vits16-768 for presets; the arch string for custom configs."""
    stem = config.arch.replace("_", "-") if SIZES.get(config.name) == config else config.arch
    return Path("bundles") / f"{stem}-{resolution}"


class _Steps:
    """Numbered progress lines with the seconds each step took."""

    def __init__(self, total: int, report: Report | None) -> None:
        self.total, self.done, self.report = total, 0, report or (lambda line: None)
        self.started = time.perf_counter()

    def run(self, title: str, work: Callable[[], object]) -> object:
        self.done += 1
        start = time.perf_counter()
        self.report(f"[{self.done}/{self.total}] {title} ...")
        result = work()
        self.report(f"[{self.done}/{self.total}] {title}: done in {time.perf_counter() - start:.1f} s")
        return result

    def note(self, line: str) -> None:
        self.report(line)


def _resolve_trt(requested: bool | None) -> tuple[bool, str | None]:
    """(build an engine?, why not). --trt without TensorRT/GPU fails here, before any work."""
    from insid3.export.tensorrt_build import require_tensorrt, tensorrt_unavailable_reason

    if requested is False:
        return False, "--no-trt"
    if requested is True:
        require_tensorrt()
        return True, None
    reason = tensorrt_unavailable_reason()
    return reason is None, reason


def export_bundle(settings: ExportSettings, *, report: Report | None = None) -> Path:
    """Writes the bundle into settings.out_dir and returns that folder.

    Checks that need no work (settings, TensorRT availability with --trt, the output folder) run
    first; the bundle is assembled in a staging folder that replaces out_dir only when complete.
    """
    from insid3.export import output_folder

    s = settings.validated()
    out = Path(s.out_dir)
    build_trt, trt_skip_reason = _resolve_trt(s.trt)
    output_folder.check_output_folder(out, force=s.force)
    steps = _Steps(5 + build_trt, report)
    backbone = steps.run(_loading_title(s), lambda: _load_backbone(s))
    staging = output_folder.make_staging_folder(out)
    try:
        artifacts, pixels, ort_features = _onnx_and_basis(s, backbone.model, staging, steps)
        if build_trt:
            artifacts += steps.run(
                f"TensorRT {s.precision} engine (batch 1..{s.max_batch})",
                lambda: _tensorrt_artifacts(s, staging, pixels, ort_features, previous_folder=out),
            )
        else:
            steps.note(f"      TensorRT engine skipped: {trt_skip_reason}")
        write_metadata(staging, _metadata(s, backbone.source, tuple(artifacts)))
        output_folder.publish(staging, out)
    except BaseException:
        output_folder.discard(staging)
        raise
    steps.note(f"bundle written to {out} in {time.perf_counter() - steps.started:.1f} s")
    return out


def _loading_title(s: ExportSettings) -> str:
    source = f"random-init (seed {s.seed})" if s.random_init else str(s.weights)
    c = s.model
    return f"loading {source} as DINOv3 {c.name} ({c.embed_dim} wide, {c.depth} deep)"


def _load_backbone(s: ExportSettings):
    from insid3.export.backbone import checkpoint_backbone, random_backbone

    if s.random_init:
        return random_backbone(s.model, seed=s.seed, resolution=s.resolution)
    return checkpoint_backbone(s.model, s.weights, resolution=s.resolution)


def _onnx_and_basis(
    s: ExportSettings, model, staging: Path, steps: _Steps
) -> tuple[list[Artifact], np.ndarray, np.ndarray]:
    """model.onnx (checked, with its ORT parity) and positional_basis.npy; also the parity input
    and ORT's features on it, which the TensorRT engine is compared against."""
    from insid3.export.onnx_export import check_graph, export_onnx, onnx_parity, parity_input
    from insid3.export.positional_basis import positional_basis

    config, onnx_path = s.model, staging / ONNX_FILE
    started = time.perf_counter()
    steps.run(
        f"exporting ONNX (opset {s.opset}, dynamic batch, {s.resolution}x{s.resolution})",
        lambda: export_onnx(model, onnx_path, resolution=s.resolution, opset=s.opset),
    )
    export_seconds = time.perf_counter() - started
    steps.run("checking the ONNX graph", lambda: check_graph(
        onnx_path, resolution=s.resolution, num_patches=config.num_patches(s.resolution),
        embed_dim=config.embed_dim, opset=s.opset,
    ))
    pixels = parity_input(s.resolution)
    parity, ort_features = steps.run(
        "ONNX Runtime vs torch (batch 2)",
        lambda: onnx_parity(model, onnx_path, pixels, tolerance=s.onnx_tolerance),
    )
    steps.note(f"      {parity.describe()}")
    basis = steps.run(
        "positional basis (black image, SVD)" + (", RoPE rescaled per block" if s.rope_rescale else ""),
        lambda: positional_basis(model, s.resolution, s.rope_rescale),
    )
    rescale = {} if s.rope_rescale is None else {"rope_rescale": list(s.rope_rescale), "rope_rescale_source": s.rope_rescale_source}
    np.save(staging / BASIS_FILE, basis)
    artifacts = [
        describe_file(
            staging, ONNX_FILE, kind="onnx", precision="fp32",
            parity={**parity.to_json(), "tolerance_max_abs": s.onnx_tolerance},
            details={"opset": s.opset, "export_seconds": round(export_seconds, 1),
                     "exporter": "torch.onnx dynamo", "input": INPUT_NAME, "output": OUTPUT_NAME},
        ),
        describe_file(
            staging, BASIS_FILE, kind="positional_basis", precision="fp32",
            details={"shape": list(basis.shape), "source": "all-black image, ImageNet-normalised", **rescale},
        ),
    ]
    return artifacts, pixels, ort_features


def _tensorrt_artifacts(
    s: ExportSettings, staging: Path, pixels: np.ndarray, reference: np.ndarray, *, previous_folder: Path
) -> list[Artifact]:
    from insid3.export.tensorrt_build import build_engine, engine_parity

    build = build_engine(
        staging / ONNX_FILE, staging, precision=s.precision, max_batch=s.max_batch,
        resolution=s.resolution, previous_folder=previous_folder if previous_folder.is_dir() else None,
    )
    batch = min(len(pixels), s.max_batch)  # the engine's profile ends at max_batch
    parity = engine_parity(staging / build.engine_file, pixels[:batch], reference[:batch], precision=s.precision)
    return [
        describe_file(staging, build.engine_file, kind="tensorrt", precision=s.precision,
                      parity=parity.to_json(), details=build.details),
        describe_file(staging, build.cache_file, kind="timing_cache", precision=s.precision,
                      details={"gpu": build.details["gpu"], "tensorrt": build.details["tensorrt"]}),
    ]


def _metadata(s: ExportSettings, weights: WeightsSource, artifacts: tuple[Artifact, ...]) -> BundleMetadata:
    config = s.model
    defaults = Hyperparameters(svd_components=default_svd_components(config, s.resolution))
    return BundleMetadata(
        size=config.name, arch=config.arch, resolution=s.resolution, patch_size=config.patch_size,
        embed_dim=config.embed_dim, patch_grid=config.grid(s.resolution),
        defaults=defaults.validated(config.embed_dim), weights=weights, opset=s.opset,
        artifacts=artifacts, tool_version=insid3.__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
