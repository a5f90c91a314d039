"""ONNX -> serialized TensorRT engine (strongly typed, precision in the graph), and its parity check.

Thin and import-guarded: tensorrt (and torch.cuda or cupy for buffers) are imported only when a
build is asked for. Written from TensorRT's Python API docs (Builder, OnnxParser, IBuilderConfig,
ITimingCache, IExecutionContext.execute_async_v3). What can run without a GPU (argument checks,
file naming, the precision plan in export/mixed_precision.py) is unit-tested.

TensorRT >= 10.13: earlier 10.x releases miscompile DINOv3 ViTs (NVIDIA/TensorRT issues 4558,
4723, 4742).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from insid3.errors import BackendUnavailableError, ExportError, SettingsError
from insid3.export.mixed_precision import PRECISIONS, apply_precision_plan, plan_precision
from insid3.export.parity import Parity, compare_features
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME

MIN_TENSORRT = (10, 13)
MAX_BATCH_LIMIT = 256
# Below these per-patch cosines (engine vs ONNX Runtime) the engine is broken, not merely
# rounded: fp32 disables TF32; fp16 keeps ~11 mantissa bits, bf16 8, with fp32 softmax/LayerNorm.
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.99, "bf16": 0.98}
_MEMORY_TOKENS = re.compile(r"^(\d+gb|hbm\w*|gddr\w*)$")


def validate_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise SettingsError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def validate_max_batch(max_batch: int) -> int:
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= MAX_BATCH_LIMIT:
        raise SettingsError(f"max batch {max_batch!r} must be an integer in [1, {MAX_BATCH_LIMIT}]")
    return max_batch


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def cuda_device_name() -> str | None:
    """The first CUDA device's name, via torch.cuda or cupy (whichever is present), else None."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
            return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # cupy missing, or present without a driver/device
        pass
    return None


def tensorrt_unavailable_reason() -> str | None:
    """None when an engine can be built here, else the reason in a few words."""
    try:
        import tensorrt as trt
    except ImportError:
        return "tensorrt is not installed"
    if parse_version(trt.__version__) < MIN_TENSORRT:
        return (
            f"tensorrt {trt.__version__} is installed (10.x before 10.13 miscompile DINOv3 ViTs: "
            "NVIDIA/TensorRT issues 4558, 4723, 4742)"
        )
    if cuda_device_name() is None:
        return "no CUDA device is visible (torch.cuda / cupy)"
    return None


def require_tensorrt() -> None:
    reason = tensorrt_unavailable_reason()
    if reason:
        raise BackendUnavailableError(f"--trt needs TensorRT >= 10.13 and a CUDA device: {reason}")


def gpu_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100': the part, without its memory size and type."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t and not _MEMORY_TOKENS.match(t)]
    return "-".join(tokens) or "gpu"


def _version_tag(trt_version: str) -> str:
    return "trt" + ".".join(str(p) for p in parse_version(trt_version))


def engine_file_name(precision: str, gpu_name: str, trt_version: str) -> str:
    """e.g. model.fp16.nvidia-h100.trt10.13.0.engine: an engine runs only on that GPU and TensorRT."""
    validate_precision(precision)
    return f"model.{precision}.{gpu_slug(gpu_name)}.{_version_tag(trt_version)}.engine"


def timing_cache_file_name(gpu_name: str, trt_version: str) -> str:
    """Kernel timings of one GPU and TensorRT version: reusable across precisions and rebuilds."""
    return f"{gpu_slug(gpu_name)}.{_version_tag(trt_version)}.timing.cache"


@dataclass(frozen=True)
class EngineBuild:
    engine_file: str
    cache_file: str
    seconds: float
    details: dict = field(default_factory=dict)


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
    require_tensorrt()
    import tensorrt as trt

    started = time.perf_counter()
    gpu = cuda_device_name() or "gpu"
    model = onnx.load(str(onnx_path))
    plan = plan_precision(model, precision)
    typed = apply_precision_plan(model, plan)
    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = _parse_network(trt, logger, typed)

    config = builder.create_builder_config()
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # "fp32" means fp32 matmuls, not TF32
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
        "build_seconds": round(seconds, 1),
    }
    return EngineBuild(engine_file, cache_file, seconds, details)


def _execute(context, handle: int, input_ptr: int, output_ptr: int, name: str) -> None:
    context.set_tensor_address(INPUT_NAME, input_ptr)
    context.set_tensor_address(OUTPUT_NAME, output_ptr)
    if not context.execute_async_v3(handle):
        raise ExportError(f"TensorRT failed to run {name}")


def _run_with_torch(context, pixel_values: np.ndarray, out_shape: tuple, name: str) -> np.ndarray:
    import torch

    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # copies and the engine on one stream: no race between them
        x = torch.from_numpy(pixel_values).cuda()
        out = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        _execute(context, stream.cuda_stream, x.data_ptr(), out.data_ptr(), name)
        result = out.cpu().numpy()
    stream.synchronize()
    return result


def _run_with_cupy(context, pixel_values: np.ndarray, out_shape: tuple, name: str) -> np.ndarray:
    import cupy

    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        x = cupy.asarray(pixel_values)
        out = cupy.empty(out_shape, dtype=cupy.float32)
        _execute(context, stream.ptr, x.data.ptr, out.data.ptr, name)
        stream.synchronize()
        return cupy.asnumpy(out)


def _torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def run_engine(engine_path: Path, pixel_values: np.ndarray) -> np.ndarray:
    """Runs a serialized engine once with torch.cuda or cupy buffers (whichever is present)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise ExportError(f"TensorRT cannot deserialize {engine_path.name}")
    context = engine.create_execution_context()
    pixel_values = np.ascontiguousarray(pixel_values, dtype=np.float32)
    context.set_input_shape(INPUT_NAME, tuple(pixel_values.shape))
    out_shape = tuple(context.get_tensor_shape(OUTPUT_NAME))
    run = _run_with_torch if _torch_cuda_available() else _run_with_cupy
    return run(context, pixel_values, out_shape, engine_path.name)


def engine_parity(engine_path: Path, pixel_values: np.ndarray, reference: np.ndarray, *, precision: str) -> Parity:
    """Engine vs ONNX Runtime on the ONNX parity input; ExportError when the engine is broken."""
    parity = compare_features(run_engine(engine_path, pixel_values), reference, against="onnxruntime")
    if not parity.min_cosine >= MIN_COSINE[precision]:
        raise ExportError(
            f"{engine_path.name} does not reproduce the ONNX model: {parity.describe()} "
            f"(a {precision} engine needs min cosine >= {MIN_COSINE[precision]})"
        )
    return parity
