"""Which ONNX nodes a reduced-precision (fp16/bf16) TensorRT engine may compute in 16 bits.

TensorRT 10.12 deprecated weakly typed networks (BuilderFlag.FP16, per-layer precision) and
11.0 removed them, so precision must live in the graph: a strongly typed network follows the
ONNX types exactly. We write a copy of the fp32 graph with Casts around the projections:

- reduced: Conv and MatMul/Gemm (patch embedding, qkv, proj, MLP, attention x V): their inputs
  are cast to 16 bits (weights stored in 16 bits), their outputs cast back to fp32 (an op whose
  ONNX schema at the model's opset lacks the type stays fp32: Conv takes bf16 only from opset 22);
- fp32: everything else. In particular the attention score MatMul (q k^T, the MatMul feeding a
  Softmax): register tokens push its logits high, and fp16 keeps only ~3 significant digits of a
  large logit, which the softmax turns into large weight errors. Softmax, LayerNormalization,
  the residual stream, RoPE and the final L2 normalisation stay fp32 too.

Torch-free (onnx only), so the plan is unit-tested without TensorRT or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REDUCED_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
PRECISIONS = ("fp16", "bf16", "fp32")
REDUCIBLE_OPS = ("Conv", "MatMul", "Gemm")
# Ops that may sit between the score MatMul and its Softmax (scale, mask, cast).
_SCORE_PATH_OPS = ("Mul", "Div", "Add", "Sub", "Where", "Cast")
_SCORE_PATH_DEPTH = 4


@dataclass(frozen=True)
class PrecisionPlan:
    precision: str  # "fp16" | "bf16" | "fp32"
    reduced: tuple[str, ...]  # node names computed in 16 bits
    score_matmuls: tuple[str, ...]  # q k^T MatMuls kept fp32
    fp32_critical: tuple[str, ...]  # Softmax / LayerNormalization / ReduceL2 / Attention nodes

    def summary(self) -> dict:
        return {
            "precision": self.precision,
            "reduced_nodes": len(self.reduced),
            "fp32_score_matmuls": len(self.score_matmuls),
            "fp32_softmax_layernorm_l2norm": len(self.fp32_critical),
            "rule": "Conv/MatMul/Gemm in reduced precision; attention scores, softmax, LayerNorm, "
                    "residuals and the L2 norm in fp32",
        }


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _feeds_softmax(node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]) -> bool:
    frontier, depth = list(node.output), 0
    while frontier and depth <= _SCORE_PATH_DEPTH:
        following = [c for name in frontier for c in consumers.get(name, [])]
        if any(c.op_type == "Softmax" for c in following):
            return True
        frontier = [o for c in following if c.op_type in _SCORE_PATH_OPS for o in c.output]
        depth += 1
    return False


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _accepts(op_type: str, opset: int, precision: str) -> bool:
    """Whether the ONNX schema of `op_type` at `opset` takes that type (Conv: bf16 from 22 on)."""
    wanted = "tensor(float16)" if precision == "fp16" else "tensor(bfloat16)"
    schema = onnx.defs.get_schema(op_type, opset)
    return any(wanted in c.allowed_type_strs for c in schema.type_constraints)


def plan_precision(model: onnx.ModelProto, precision: str) -> PrecisionPlan:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    graph = model.graph
    unnamed = [n.op_type for n in graph.node if not n.name]
    if unnamed:
        raise ValueError(f"the plan needs named nodes; {len(unnamed)} are unnamed ({unnamed[0]}, ...)")
    consumers = _consumers(graph)
    scores = tuple(n.name for n in graph.node if n.op_type == "MatMul" and _feeds_softmax(n, consumers))
    critical = tuple(
        n.name for n in graph.node
        if n.op_type in ("Softmax", "LayerNormalization", "ReduceL2", "Attention")
    )
    reduced: tuple[str, ...] = ()
    if precision != "fp32":
        opset = _opset(model)
        reducible = {op for op in REDUCIBLE_OPS if _accepts(op, opset, precision)}
        reduced = tuple(n.name for n in graph.node if n.op_type in reducible and n.name not in scores)
    return PrecisionPlan(precision, reduced, scores, critical)


def _float_initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in graph.initializer if t.data_type == TensorProto.FLOAT}


def _to_reduced(array: np.ndarray, precision: str) -> np.ndarray:
    if precision == "fp16":
        return array.astype(np.float16)
    import ml_dtypes  # a dependency of onnx-ir / onnxscript, which the export needs anyway

    return array.astype(ml_dtypes.bfloat16)


def apply_precision_plan(model: onnx.ModelProto, plan: PrecisionPlan) -> onnx.ModelProto:
    """A copy of `model` with the plan's nodes wrapped in Casts (fp32 in, fp32 out)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    if plan.precision == "fp32" or not plan.reduced:
        return result
    low = REDUCED_TYPES[plan.precision]
    suffix = plan.precision
    graph = result.graph
    initializers = _float_initializers(graph)
    converted: dict[str, str] = {}  # fp32 tensor name -> its reduced-precision twin
    reduced = set(plan.reduced)
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name not in reduced:
            nodes.append(node)
            continue
        for i, name in enumerate(node.input):
            if not name:
                continue  # an omitted optional input
            if name not in converted:
                twin = f"{name}.{suffix}"
                if name in initializers:
                    array = numpy_helper.to_array(initializers[name])
                    graph.initializer.append(numpy_helper.from_array(_to_reduced(array, plan.precision), twin))
                else:
                    nodes.append(helper.make_node("Cast", [name], [twin], name=f"{node.name}.cast_in{i}", to=low))
                converted[name] = twin
            node.input[i] = converted[name]
        outputs = list(node.output)
        for i, name in enumerate(outputs):
            node.output[i] = f"{name}.{suffix}"
        nodes.append(node)
        for i, name in enumerate(outputs):
            nodes.append(helper.make_node(
                "Cast", [f"{name}.{suffix}"], [name], name=f"{node.name}.cast_out{i}", to=TensorProto.FLOAT
            ))
    del graph.node[:]
    graph.node.extend(nodes)
    # Drop fp32 initializers that only the reduced nodes used: the engine need not carry both.
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return result
