"""The TensorRT build's TF32 rule (export/tensorrt_build.py): TensorRT turns TF32 on by default, and
it rounds every fp32 Conv/MatMul to 10-bit mantissas, those a 16-bit precision plan keeps in fp32
(the attention scores) included; so the flag is cleared wherever a layer is promised fp32, and the
build's details (the bundle's insid3.json) say so."""

import types

import pytest

from insid3.export import tensorrt_build as trt_build
from insid3.export.mixed_precision import PrecisionPlan


class _Config:
    def __init__(self):
        self.cleared = []

    def clear_flag(self, flag):
        self.cleared.append(flag)


TRT = types.SimpleNamespace(BuilderFlag=types.SimpleNamespace(TF32="TF32"))


@pytest.mark.parametrize(("plan", "allowed"), [
    (PrecisionPlan("fp32", reduced=(), score_matmuls=(), fp32_critical=()), False),
    (PrecisionPlan("fp16", reduced=("proj",), score_matmuls=("q_kT",), fp32_critical=("softmax",)), False),
    (PrecisionPlan("bf16", reduced=("proj",), score_matmuls=("q_kT",), fp32_critical=()), False),
    (PrecisionPlan("bf16", reduced=("proj",), score_matmuls=(), fp32_critical=("attention",)), False),
    (PrecisionPlan("fp16", reduced=("proj",), score_matmuls=(), fp32_critical=()), True),
])
def test_tf32_is_cleared_wherever_a_layer_is_promised_fp32(plan, allowed):
    config = _Config()
    assert trt_build.tf32_allowed(plan) is allowed
    assert trt_build.configure_tf32(config, TRT, plan) is allowed
    assert config.cleared == ([] if allowed else ["TF32"])


def test_a_tensorrt_without_the_flag_builds_without_tf32():
    config = _Config()
    plan = PrecisionPlan("fp16", reduced=("proj",), score_matmuls=(), fp32_critical=())
    assert trt_build.configure_tf32(config, types.SimpleNamespace(BuilderFlag=types.SimpleNamespace()), plan) is False
    assert config.cleared == []
    assert "fp32 matrix product" in trt_build.TF32_RULE
