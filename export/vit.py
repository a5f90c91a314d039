"""The export-friendly DINOv3 ViT: pixels -> L2-normalised patch features of the last layer.

Parameter and buffer names follow the Meta hub checkpoints (cls_token, storage_tokens,
blocks.{i}.attn.qkv.bias_mask, ...), so a hub state dict loads as is and a Hugging Face one
after renaming (export/checkpoint_names.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from insid3.export.config import VitConfig
from insid3.export.layers import Block, PatchEmbed, RopeTables


class DinoVisionTransformer(nn.Module):
    def __init__(self, config: VitConfig, *, resolution: int) -> None:
        super().__init__()
        self.config = config
        c = config.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.storage_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, c))
        self.patch_embed = PatchEmbed(patch_size=config.patch_size, embed_dim=c)
        self.rope_embed = RopeTables(
            head_dim=config.head_dim, base=config.rope_base,
            num_prefix_tokens=config.num_prefix_tokens, grid=config.grid(resolution),
        )
        self.blocks = nn.ModuleList(
            Block(dim=c, num_heads=config.num_heads, mlp_dim=config.mlp_dim, eps=config.layer_norm_eps)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(c, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, R, R] float32 (ImageNet-normalised) -> features [B, N, C]."""
        batch = pixel_values.shape[0]
        p = self.config.patch_size
        grid = (pixel_values.shape[2] // p, pixel_values.shape[3] // p)
        sin, cos = self.rope_embed(grid)  # [T, D] each, T = 1 + registers + N
        patches = self.patch_embed(pixel_values)  # [B, N, C]
        prefix = torch.cat([self.cls_token, self.storage_tokens], dim=1).expand(batch, -1, -1)
        x = torch.cat([prefix, patches], dim=1)  # [B, T, C]
        for block in self.blocks:
            x = block(x, sin, cos)
        x = self.norm(x)[:, self.config.num_prefix_tokens :]  # drop CLS and registers
        return F.normalize(x, dim=-1)
