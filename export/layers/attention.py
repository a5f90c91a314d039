"""Multi-head self-attention with RoPE on the patch tokens and the hub's masked key bias.

The hub checkpoints (mask_k_bias=True) store a qkv bias and a `bias_mask` that zeroes its key
third; the mask is a buffer loaded from the checkpoint (the reference module initialises it to
NaN, so a checkpoint without it is not a DINOv3 hub checkpoint).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from insid3.export.layers.rope import rope_apply


class SelfAttention(nn.Module):
    def __init__(self, *, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)  # rows: q, k, v; each head contiguous
        self.qkv.register_buffer("bias_mask", torch.ones(3 * dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        bias = self.qkv.bias * self.qkv.bias_mask  # constant-folded by the exporter
        qkv = F.linear(x, self.qkv.weight, bias)  # [B, T, 3C]
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, T, D]
        q, k = rope_apply(q, sin, cos), rope_apply(k, sin, cos)
        # Scores and softmax run in the input precision (fp32 here); the TensorRT build keeps
        # this path fp32 in reduced-precision engines (see export/mixed_precision.py).
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, T, D]
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
