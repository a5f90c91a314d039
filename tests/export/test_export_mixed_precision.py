"""The reduced-precision graph a TensorRT engine is built from: what runs in 16 bits, what stays fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from support.export_fixtures import TINY, make_tiny_bundle

from insid3.export.mixed_precision import apply_precision_plan, plan_precision
from insid3.export.onnx_export import run_onnxruntime
from insid3.export.parity import compare_features


@pytest.fixture(scope="module")
def fp32_graph(tmp_path_factory):
    bundle = make_tiny_bundle(tmp_path_factory.mktemp("mixed"), resolution=224, seed=0)
    return bundle / "model.onnx", onnx.load(str(bundle / "model.onnx"))


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    return types


def test_plan_keeps_attention_scores_softmax_and_layernorm_fp32(fp32_graph):
    _, model = fp32_graph
    plan = plan_precision(model, "fp16")
    by_name = {node.name: node for node in model.graph.node}
    assert len(plan.score_matmuls) == TINY.depth
    softmax_inputs = {n.input[0] for n in model.graph.node if n.op_type == "Softmax"}
    assert {by_name[name].output[0] for name in plan.score_matmuls} == softmax_inputs  # q k^T -> softmax
    # Conv + per block: qkv, attention x V, proj, fc1, fc2.
    assert sorted(by_name[n].op_type for n in plan.reduced) == ["Conv"] + ["MatMul"] * (5 * TINY.depth)
    critical = sorted(by_name[n].op_type for n in plan.fp32_critical)
    assert critical == ["LayerNormalization"] * (2 * TINY.depth + 1) + ["ReduceL2"] + ["Softmax"] * TINY.depth
    assert plan_precision(model, "fp32").reduced == ()


def test_fp16_graph_types_and_numerics(fp32_graph, tmp_path):
    path, model = fp32_graph
    plan = plan_precision(model, "fp16")
    typed = apply_precision_plan(model, plan)
    onnx.checker.check_model(typed, full_check=True)
    types = _tensor_types(typed)
    nodes = {node.name: node for node in typed.graph.node}
    data_types = lambda node: {types[i] for i in node.input if i} - {TensorProto.INT64}  # noqa: E731 (not axes)
    for name in plan.reduced:
        assert data_types(nodes[name]) == {TensorProto.FLOAT16}, name
    for name in plan.score_matmuls + plan.fp32_critical:
        assert data_types(nodes[name]) == {TensorProto.FLOAT}, name
    assert types["features"] == TensorProto.FLOAT
    assert not any(t.data_type == TensorProto.FLOAT and t.name.endswith(".weight") for t in typed.graph.initializer
                   if t.name.startswith("patch_embed"))  # fp32 twins of converted weights are dropped

    onnx.save(typed, str(tmp_path / "model.fp16.onnx"))
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    parity = compare_features(run_onnxruntime(tmp_path / "model.fp16.onnx", pixels),
                              run_onnxruntime(path, pixels), against="onnxruntime")
    assert parity.min_cosine > 0.999 and 0 < parity.max_abs_error < 1e-2


def test_bf16_graph_reduces_only_what_the_opset_allows(fp32_graph):
    from onnx.reference import ReferenceEvaluator  # ONNX Runtime has no CPU bf16 MatMul

    _, model = fp32_graph
    plan = plan_precision(model, "bf16")
    ops = {node.name: node.op_type for node in model.graph.node}
    assert "Conv" not in {ops[n] for n in plan.reduced}  # Conv takes bf16 only from opset 22
    assert len(plan.reduced) == 5 * TINY.depth
    typed = apply_precision_plan(model, plan)
    onnx.checker.check_model(typed, full_check=True)
    pixels = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    reduced = ReferenceEvaluator(typed).run(["features"], {"pixel_values": pixels})[0]
    exact = ReferenceEvaluator(model).run(["features"], {"pixel_values": pixels})[0]
    assert compare_features(reduced, exact, against="reference").min_cosine > 0.99


def test_unknown_precision(fp32_graph):
    with pytest.raises(ValueError, match="precision 'int8'"):
        plan_precision(fp32_graph[1], "int8")
