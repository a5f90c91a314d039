"""ONNX -> serialized TensorRT engine (strongly typed, precision in the graph), and its parity check.

Thin and import-guarded: tensorrt is imported only when a build is asked for. Written from
TensorRT's Python API docs (Builder, OnnxParser, IBuilderConfig, ITimingCache). What can run
without a GPU (argument checks, the precision plan in export/mixed_precision.py) is unit-tested.

The version check, the GPU's name and the engine-naming rule are insid3.tensorrt's, shared with
the runtime; the parity check runs the engine through insid3.tensorrt's runner (CuPy buffers and
stream: a TensorRT build needs cupy, not torch.cuda).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from insid3.errors import BackendUnavailableError, ExportError, SettingsError
from insid3.export.mixed_precision import PRECISIONS, PrecisionPlan, apply_precision_plan, plan_precision
from insid3.export.parity import Parity, compare_features
from insid3.format.tensors import INPUT_NAME
from insid3.tensorrt.engine_files import engine_file_name, timing_cache_file_name
from insid3.tensorrt.versions import MIN_TENSORRT, gpu_name, tensorrt_unavailable_reason

MAX_BATCH_LIMIT = 256
# Below these per-patch cosines (engine vs ONNX Runtime) the engine is broken, not merely
# rounded: TF32 is off (configure_tf32); fp16 keeps ~11 mantissa bits, bf16 8, with fp32 softmax/LayerNorm.
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.99, "bf16": 0.98}


def validate_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise SettingsError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def validate_max_batch(max_batch: int) -> int:
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= MAX_BATCH_LIMIT:
        raise SettingsError(f"max batch {max_batch!r} must be an integer in [1, {MAX_BATCH_LIMIT}]")
    return max_batch


def require_tensorrt() -> None:
    reason = tensorrt_unavailable_reason()
    if reason:
        minimum = ".".join(map(str, MIN_TENSORRT))
        raise BackendUnavailableError(f"--trt needs TensorRT >= {minimum} and a CUDA device: {reason}")


@dataclass(frozen=True)
class EngineBuild:
    engine_file: str
    cache_file: str
    seconds: float
    details: dict = field(default_factory=dict)


TF32_RULE = ("TF32 off wherever the precision plan promises an fp32 matrix product (every fp32 engine; the "
             "attention scores q.k^T and fused attention of fp16/bf16 engines); TensorRT enables it by default")


def tf32_allowed(plan: PrecisionPlan) -> bool:
    """Whether TF32 may round this plan's fp32 matrix products: only when it keeps none (TensorRT
    applies the flag to every fp32 Conv/MatMul, including those a 16-bit plan keeps in fp32)."""
    return plan.precision != "fp32" and not plan.score_matmuls and not plan.fp32_critical


def configure_tf32(config, trt, plan: PrecisionPlan) -> bool:
    """Clears the builder's TF32 flag unless `tf32_allowed(plan)`; returns whether TF32 is on."""
    allowed = tf32_allowed(plan)
    if not allowed and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    return allowed and hasattr(trt.BuilderFlag, "TF32")


def _parse_network(trt, logger, model: onnx.ModelProto):
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT cannot parse the ONNX graph: {errors[0] if errors else 'unknown error'}")
    return builder, network, parser


def build_engine(
    onnx_path: Path, folder: Path, *, precision: str, max_batch: int, resolution: int,
    previous_folder: Path | None = None,
) -> EngineBuild:
    """Builds `folder/<engine name>` and its timing cache from the fp32 ONNX at `onnx_path`.

    previous_folder: a bundle being replaced; its timing cache (same GPU and TensorRT) is reused.
    """
    validate_precision(precision)
    require_tensorrt()
    import tensorrt as trt

    started = time.perf_counter()
    gpu = gpu_name(0)
    model = onnx.load(str(onnx_path))
    plan = plan_precision(model, precision)
    typed = apply_precision_plan(model, plan)
    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = _parse_network(trt, logger, typed)

    config = builder.create_builder_config()
    tf32 = configure_tf32(config, trt, plan)
    profile = builder.create_optimization_profile()
    shape = (3, resolution, resolution)
    # Tuned for batch 1 (the runtime segments one image at a time); valid up to max_batch.
    profile.set_shape(INPUT_NAME, (1, *shape), (1, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    cache_file = timing_cache_file_name(gpu, trt.__version__)
    previous_cache = previous_folder / cache_file if previous_folder else None
    cached = previous_cache.read_bytes() if previous_cache and previous_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cached), False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build a {precision} engine (see its log above)")
    engine_file = engine_file_name(precision, gpu, trt.__version__)
    (folder / engine_file).write_bytes(memoryview(serialized))
    (folder / cache_file).write_bytes(memoryview(config.get_timing_cache().serialize()))
    seconds = time.perf_counter() - started
    details = {
        "gpu": gpu, "tensorrt": trt.__version__, "min_batch": 1, "opt_batch": 1,
        "max_batch": max_batch, "strongly_typed": True, "precision_plan": plan.summary(),
        "tf32": tf32, "tf32_rule": TF32_RULE,
        "build_seconds": round(seconds, 1),
    }
    return EngineBuild(engine_file, cache_file, seconds, details)


def engine_features(engine_path: Path, pixel_values: np.ndarray) -> np.ndarray:
    """Runs a serialized engine once (insid3.tensorrt's runner) and copies its features to the host."""
    import cupy

    from insid3.tensorrt.runner import TensorRtRunner

    with TensorRtRunner.from_file(engine_path) as runner:  # closed (context, buffers, stream) once copied
        try:
            features = runner.infer(np.ascontiguousarray(pixel_values, dtype=np.float32))
        except RuntimeError as exc:  # TensorRT refused the shape or failed to run: the export failed
            raise ExportError(str(exc)) from exc
        return cupy.asnumpy(features)


def engine_parity(engine_path: Path, pixel_values: np.ndarray, reference: np.ndarray, *, precision: str) -> Parity:
    """Engine vs ONNX Runtime on the ONNX parity input; ExportError when the engine is broken."""
    parity = compare_features(engine_features(engine_path, pixel_values), reference, against="onnxruntime")
    if not parity.min_cosine >= MIN_COSINE[precision]:
        raise ExportError(
            f"{engine_path.name} does not reproduce the ONNX model: {parity.describe()} "
            f"(a {precision} engine needs min cosine >= {MIN_COSINE[precision]})"
        )
    return parity
