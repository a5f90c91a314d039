"""torch -> ONNX with torch.onnx's dynamo exporter, then the graph checks and the ORT parity check.

torch >= 2.9 exports through torch.export by default (`dynamo=True`); it gives a clean graph
with a symbolic batch axis (RoPE tables are constants, no If/Loop). It emits opset 18 natively
and cannot down-convert this graph to 17 (its converter falls back to 18 silently), so opsets
start at 18; from 23 on SDPA becomes the ONNX Attention op, which the fp32-softmax precision plan
for TensorRT has not been checked against, hence the upper bound.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from insid3.errors import ExportError, SettingsError
from insid3.export.parity import Parity, compare_features
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME

DEFAULT_OPSET = 18
OPSETS = range(18, 23)
PARITY_BATCH = 2
FORBIDDEN_OPS = ("If", "Loop", "Scan")  # TensorRT rejects the If that `tile` on shapes makes
ONNX_TOLERANCE = 1e-4  # max abs error of the L2-normalised features, ORT vs torch


def validate_opset(opset: int) -> int:
    if opset not in OPSETS:
        raise SettingsError(
            f"opset {opset} is not supported: use {OPSETS.start}..{OPSETS.stop - 1} "
            "(the dynamo exporter emits 18 and up)"
        )
    return opset


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs registry warnings and prints progress: keep the CLI's output ours."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: torch.nn.Module, path: Path, *, resolution: int, opset: int) -> None:
    """Writes one self-contained .onnx (weights inside: ViT-L is 1.2 GB, under protobuf's 2 GB)."""
    example = torch.zeros(PARITY_BATCH, 3, resolution, resolution)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(
                model, (example,), str(path), dynamo=True, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes={INPUT_NAME: {0: batch}}, external_data=False, optimize=True,
            )
    except Exception as exc:  # the exporter raises many kinds; the user needs the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"ONNX export failed: {first}") from exc


def check_graph(path: Path, *, resolution: int, num_patches: int, embed_dim: int, opset: int) -> onnx.ModelProto:
    """onnx.checker plus our contract: names, dtypes, shapes, dynamic batch, opset, no If/Loop."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path} fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    model = onnx.load(str(path))
    problems = []
    found = sorted({n.op_type for n in model.graph.node if n.op_type in FORBIDDEN_OPS})
    if found:
        problems.append(f"control-flow nodes {found}")
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version != opset:
        problems.append(f"opset {version}, expected {opset}")
    expected = {
        INPUT_NAME: (model.graph.input, ["batch?", 3, resolution, resolution]),
        OUTPUT_NAME: (model.graph.output, ["batch?", num_patches, embed_dim]),
    }
    for name, (values, dims) in expected.items():
        value = next((v for v in values if v.name == name), None)
        if value is None or len(values) != 1:
            problems.append(f"{name} is not the single graph {'input' if name == INPUT_NAME else 'output'}")
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        if tensor.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"{name} is {onnx.TensorProto.DataType.Name(tensor.elem_type)}, expected FLOAT")
        if len(shape) != len(dims) or not isinstance(shape[0], str) or shape[1:] != dims[1:]:
            problems.append(f"{name} has shape {shape}, expected [batch, {', '.join(map(str, dims[1:]))}]")
    if problems:
        raise ExportError(f"{path}: {'; '.join(problems)}")
    return model


def parity_input(resolution: int, *, seed: int = 0) -> np.ndarray:
    """[2, 3, R, R] float32 normal noise: the scale of ImageNet-normalised pixels."""
    return np.random.default_rng(seed).standard_normal((PARITY_BATCH, 3, resolution, resolution)).astype(np.float32)


def run_onnxruntime(path: Path, pixel_values: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: pixel_values})[0]


def onnx_parity(
    model: torch.nn.Module, path: Path, pixel_values: np.ndarray, *, tolerance: float = ONNX_TOLERANCE
) -> tuple[Parity, np.ndarray]:
    """ORT vs torch on the same input; ExportError above `tolerance`. Returns the ORT features too."""
    with torch.no_grad():
        expected = model(torch.from_numpy(pixel_values)).numpy()
    actual = run_onnxruntime(path, pixel_values)
    parity = compare_features(actual, expected, against="torch")
    if not parity.max_abs_error <= tolerance:  # also catches NaN
        raise ExportError(
            f"{path.name} does not reproduce the torch model: {parity.describe()} "
            f"(tolerance {tolerance:.0e} max abs)"
        )
    return parity, actual
