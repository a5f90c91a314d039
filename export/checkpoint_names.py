"""Tensor names and shapes of the two checkpoint formats, and the renaming between them (torch-free
apart from the tensors themselves). The tables below were read off Meta's dinov3 code and
transformers' DINOv3ViTModel by listing the state dicts of randomly initialised models.

Our model uses the Meta hub names, so "canonical" below means Meta naming.
"""

from __future__ import annotations

import re

import torch

from insid3.export.config import VitConfig

# Meta tensors a checkpoint carries that the model does not load as parameters: the mask token
# is unused at inference and the RoPE periods are recomputed (and checked) instead.
META_EXTRAS = ("mask_token", "rope_embed.periods")

_HF_LAYER = re.compile(r"^(?:model\.)?layer\.(\d+)\.(.+)$")

# Per-block renames that are one-to-one (HF suffix -> Meta suffix). The attention q/k/v
# projections are fused into qkv separately.
_HF_BLOCK_RENAMES = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.o_proj.weight": "attn.proj.weight",
    "attention.o_proj.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.up_proj.weight": "mlp.fc1.weight",
    "mlp.up_proj.bias": "mlp.fc1.bias",
    "mlp.down_proj.weight": "mlp.fc2.weight",
    "mlp.down_proj.bias": "mlp.fc2.bias",
}
_HF_QKV = ("attention.q_proj.weight", "attention.q_proj.bias", "attention.k_proj.weight",
           "attention.v_proj.weight", "attention.v_proj.bias")
_HF_GLOBAL_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "storage_tokens",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}


def expected_shapes(config: VitConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor our model loads (Meta names) with its shape."""
    c, m, p = config.embed_dim, config.mlp_dim, config.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, c),
        "storage_tokens": (1, config.num_register_tokens, c),
        "patch_embed.proj.weight": (c, 3, p, p),
        "patch_embed.proj.bias": (c,),
        "norm.weight": (c,),
        "norm.bias": (c,),
    }
    for i in range(config.depth):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm1.weight": (c,), b + "norm1.bias": (c,),
            b + "attn.qkv.weight": (3 * c, c), b + "attn.qkv.bias": (3 * c,),
            b + "attn.qkv.bias_mask": (3 * c,),
            b + "attn.proj.weight": (c, c), b + "attn.proj.bias": (c,),
            b + "ls1.gamma": (c,), b + "ls2.gamma": (c,),
            b + "norm2.weight": (c,), b + "norm2.bias": (c,),
            b + "mlp.fc1.weight": (m, c), b + "mlp.fc1.bias": (m,),
            b + "mlp.fc2.weight": (c, m), b + "mlp.fc2.bias": (c,),
        })
    return shapes


def block_indices(names: list[str], pattern: re.Pattern) -> list[int]:
    return sorted({int(match.group(1)) for name in names if (match := pattern.match(name))})


META_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def hf_to_meta(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames an HF DINOv3ViTModel state dict (either layer prefix) to Meta names.

    HF has no key bias: the fused qkv bias gets zeros there and a bias_mask of (1, 0, 1), which
    is what the hub checkpoints hold. Unknown names are kept as they are, so that validation
    reports them.
    """
    out: dict[str, torch.Tensor] = {}
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        if name in _HF_GLOBAL_RENAMES:
            out[_HF_GLOBAL_RENAMES[name]] = tensor
        elif name == "embeddings.mask_token":
            out["mask_token"] = tensor.reshape(1, -1)
        elif match := _HF_LAYER.match(name):
            layers.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
        else:
            out[name] = tensor
    for i, parts in sorted(layers.items()):
        b = f"blocks.{i}."
        if all(key in parts for key in _HF_QKV):
            q_bias, v_bias = parts.pop("attention.q_proj.bias"), parts.pop("attention.v_proj.bias")
            weights = [parts.pop(f"attention.{x}_proj.weight") for x in "qkv"]
            out[b + "attn.qkv.weight"] = torch.cat(weights, dim=0)
            out[b + "attn.qkv.bias"] = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])
            ones = torch.ones_like(q_bias, dtype=torch.float32)
            out[b + "attn.qkv.bias_mask"] = torch.cat([ones, torch.zeros_like(ones), ones])
        for suffix, tensor in parts.items():
            out[b + _HF_BLOCK_RENAMES.get(suffix, "hf." + suffix)] = tensor
    return out


def meta_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta names -> HF `model.layer.{i}.` names (the tests' converter for transformers).

    The masked key bias is dropped, as HF has none; the bias mask is applied to q and v (ones in
    hub checkpoints).
    """
    global_back = {meta: hf for hf, meta in _HF_GLOBAL_RENAMES.items()}
    block_back = {meta: hf for hf, meta in _HF_BLOCK_RENAMES.items()}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name in global_back:
            out[global_back[name]] = tensor
        elif name == "mask_token":
            out["embeddings.mask_token"] = tensor.reshape(1, 1, -1)
        elif match := META_BLOCK.match(name):
            i, suffix = int(match.group(1)), name[match.end():]
            b = f"model.layer.{i}."
            if suffix == "attn.qkv.weight":
                for x, part in zip("qkv", tensor.chunk(3, dim=0)):
                    out[f"{b}attention.{x}_proj.weight"] = part
            elif suffix == "attn.qkv.bias":
                mask = state[f"blocks.{i}.attn.qkv.bias_mask"]
                q_bias, _, v_bias = (tensor * mask).chunk(3, dim=0)
                out[b + "attention.q_proj.bias"], out[b + "attention.v_proj.bias"] = q_bias, v_bias
            elif suffix != "attn.qkv.bias_mask":
                out[b + block_back[suffix]] = tensor
    return out


def hf_config_dict(config: VitConfig) -> dict:
    """The config.json fields of a DINOv3ViTModel equivalent to `config`."""
    return {
        "model_type": "dinov3_vit",
        "architectures": ["DINOv3ViTModel"],
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.mlp_dim,
        "patch_size": config.patch_size,
        "num_register_tokens": config.num_register_tokens,
        "rope_theta": config.rope_base,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_act": "gelu",
        "use_gated_mlp": False,
        "query_bias": True,
        "key_bias": False,
        "value_bias": True,
        "proj_bias": True,
        "mlp_bias": True,
    }
