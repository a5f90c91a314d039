"""Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

from __future__ import annotations

import torch
from torch import nn

from insid3.export.layers.attention import SelfAttention
from insid3.export.layers.layer_scale import LayerScale
from insid3.export.layers.mlp import Mlp


class Block(nn.Module):
    def __init__(self, *, dim: int, num_heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim=dim, num_heads=num_heads)
        self.ls1 = LayerScale(dim=dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim=dim, hidden_dim=mlp_dim)
        self.ls2 = LayerScale(dim=dim)

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), sin, cos))  # [B, T, C]
        return x + self.ls2(self.mlp(self.norm2(x)))
