"""Export-friendly DINOv3 ViT layers, one per file (after facebookresearch/dinov3's dinov3/layers)."""

from insid3.export.layers.attention import SelfAttention
from insid3.export.layers.block import Block
from insid3.export.layers.layer_scale import LayerScale
from insid3.export.layers.mlp import Mlp
from insid3.export.layers.patch_embed import PatchEmbed
from insid3.export.layers.rope import RopeTables, rope_apply, rope_periods

__all__ = [
    "Block", "LayerScale", "Mlp", "PatchEmbed", "RopeTables", "SelfAttention", "rope_apply",
    "rope_periods",
]
