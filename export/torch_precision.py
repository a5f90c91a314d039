"""The export model in bf16 or fp16 under torch, with the TensorRT plan's fp32 islands.

export/mixed_precision.py decides, for a reduced-precision TensorRT engine, that the matrix
products (Conv, MatMul/Gemm) run in 16 bits and everything else in fp32: LayerNorm, softmax,
RoPE, the residual stream and the final L2 norm. This module gives the torch model the same
split, on any device, with the model's own code unchanged:

- `cast_matrix_weights` stores the weights of every nn.Linear and nn.Conv2d in 16 bits (once);
- `ReducedPrecision`, a torch function mode, runs `F.linear` and `F.conv2d` on 16-bit inputs and
  hands back fp32, and feeds `F.scaled_dot_product_attention` 16-bit q, k and v and hands back
  fp32. Every other op therefore sees fp32 tensors and computes in fp32.

Attention differs from the TensorRT plan in one respect: the plan keeps the q k^T product fp32
end to end, while the fused SDPA kernels (flash, memory-efficient) read q and k in 16 bits and
keep the logits, the softmax and its running sums in fp32 accumulators, never stored in 16 bits
(the plan's concern: a large logit rounded to fp16). That is how DINOv3 itself runs in bf16.

Why not torch.autocast: its op lists differ between devices (on the CPU, autocast leaves
layer_norm and softmax in bf16; on CUDA it runs them in fp32), so a CPU test of an autocast
model would not test what the GPU runs. These explicit casts behave alike on every device.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

REDUCED_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("fp32", "bf16", "fp16")
_MATRIX_FUNCTIONS = (F.linear, F.conv2d)


def validate_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def _low(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


class ReducedPrecision(TorchFunctionMode):
    """Within it, matrix products and attention run in `dtype` and return fp32 (module docstring)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func: Callable, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _MATRIX_FUNCTIONS or func is F.scaled_dot_product_attention:
            args = tuple(_low(a, self.dtype) for a in args)
            kwargs = {k: _low(v, self.dtype) for k, v in kwargs.items()}
            return func(*args, **kwargs).float()
        return func(*args, **kwargs)


def cast_matrix_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Stores every nn.Linear / nn.Conv2d parameter and buffer in `dtype`, in place (the qkv
    bias mask too: 0 and 1 are exact). LayerNorm, LayerScale, tokens and RoPE tables stay fp32."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.to(dtype)
    return model


def precision_mode(precision: str) -> AbstractContextManager:
    """The context to run a `prepare_model` model's forward under: none for fp32."""
    validate_precision(precision)
    return nullcontext() if precision == "fp32" else ReducedPrecision(REDUCED_DTYPES[precision])


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    """The model, its matrix weights cast for a reduced precision (in place); fp32: unchanged."""
    validate_precision(precision)
    return model if precision == "fp32" else cast_matrix_weights(model, REDUCED_DTYPES[precision])


def fused_attention_backends() -> list:
    """SDPA's flash and memory-efficient kernels (fp32 inputs take the memory-efficient one)."""
    return [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]


def forward_function(
    model: nn.Module,
    precision: str,
    *,
    attention_backends: list | None = None,
    compile_backend: str | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """pixels [B, 3, R, R] fp32 -> features [B, N, C] fp32 through a `prepare_model` model, under
    the precision's mode and, where given, only these SDPA kernels; `compile_backend`: through
    torch.compile with that backend ("inductor" on a GPU; the tests use "aot_eager")."""
    validate_precision(precision)

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        kernels = sdpa_kernel(attention_backends) if attention_backends else nullcontext()
        with kernels, precision_mode(precision):
            return model(pixels).contiguous()

    return torch.compile(forward, backend=compile_backend) if compile_backend else forward
