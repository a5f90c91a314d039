"""The RoPE rescale factors DINOv3's hub ViTs draw per block in training mode, and their file.

The hub's ViT-S/B/L 16 are built with rescale_coords = 2 and fp32 RoPE tables, and rebuild the
table in every block. In training mode (a model fresh from torch.hub is in training mode) each
rebuild multiplies the patch coordinates by exp(u), u uniform in [-ln 2, ln 2], drawn as a
one-element float32 tensor on the model's device with `torch.empty(1).uniform_(...)`: one draw
per block, in block order, and nothing else in that forward pass draws random numbers (its
dropout and drop-path rates are 0, which draw nothing). The reference builds its positional
basis that way, right after `torch.manual_seed(seed)`, on CUDA. So the factors it used are the
first `depth` draws of the CUDA generator after that seed: `draw_rescale` on a CUDA
device reproduces them (the CPU generator gives other numbers).

`predicted_cuda_factors` computes the same draws on any machine: CUDA's generator is
Philox4x32-10 (the counter advances by 4 per 1-element `uniform_`, element 0 is the first
32-bit output, mapped to (0, 1] as curand does and to [from, to) as torch's kernel does). The
GPU acceptance run compares the two; until then the prediction is only a prediction.

File (`write_factors` / `read_factors`): JSON {"format": FORMAT, "seed", "rescale_coords",
"source", "device", "torch", "sizes": {size: {"arch", "depth", "log_factors", "factors"}}}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from insid3.export.config import SIZES

FORMAT = "insid3-rope-rescale/1"
RESCALE_COORDS = 2.0  # the hub's pos_embed_rope_rescale_coords for ViT-S/B/L 16
_MASK32 = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_TWO_POW_MINUS_32 = np.float32(2.0**-32)  # curand's CURAND_2POW32_INV


def draw_rescale(depth: int, *, device: str, seed: int = 0) -> tuple[list[float], list[float]]:
    """(u, exp(u)) per block as float32 values: the hub's draws after torch.manual_seed(seed) on
    `device` ("cuda" to reproduce the reference)."""
    import torch

    torch.manual_seed(seed)  # seeds every device's generator, as the reference's call does
    rescale_max = np.log(RESCALE_COORDS)  # the hub computes it with numpy, then negates it
    draws = [torch.empty(1, device=device, dtype=torch.float32).uniform_(-rescale_max, rescale_max)
             for _ in range(depth)]
    return [float(u.item()) for u in draws], [float(u.exp().item()) for u in draws]


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Philox4x32 with 10 rounds (Salmon et al. 2011), the generator behind curand's Philox states."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_index in range(10):
        if round_index:
            k0, k1 = (k0 + _PHILOX_W[0]) & _MASK32, (k1 + _PHILOX_W[1]) & _MASK32
        p0, p1 = _PHILOX_M[0] * c0, _PHILOX_M[1] * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & _MASK32
    return c0, c1, c2, c3


def predicted_log_factors(depth: int, seed: int = 0) -> list[float]:
    """u per block, as a CUDA device draws it: float32 values in [-ln 2, ln 2)."""
    key = (seed & _MASK32, (seed >> 32) & _MASK32)
    low, high = np.float32(-np.log(RESCALE_COORDS)), np.float32(np.log(RESCALE_COORDS))
    span = np.float32(high - low)
    values = []
    for block in range(depth):  # the k-th 1-element draw reads Philox counter (k, 0, 0, 0)
        bits = philox4x32_10((block, 0, 0, 0), key)[0]
        unit = np.float32(np.float32(bits) * _TWO_POW_MINUS_32 + _TWO_POW_MINUS_32 / np.float32(2))  # (0, 1]
        value = np.float32(float(unit) * float(span) + float(low))  # one rounding: the kernel's fused a*b+c
        values.append(float(low if value == high else value))
    return values


def predicted_cuda_factors(depth: int, seed: int = 0) -> list[float]:
    """exp(u) per block, rounded to float32 (CUDA's expf may differ in the last bit)."""
    return [float(np.float32(np.exp(u))) for u in predicted_log_factors(depth, seed)]


def factors_document(
    draws: dict[str, tuple[list[float], list[float]]], *, seed: int, source: str, device: str, torch_version: str
) -> dict:
    """The file's content for {size: (u per block, exp(u) per block)}."""
    return {
        "format": FORMAT, "seed": seed, "rescale_coords": RESCALE_COORDS, "source": source,
        "device": device, "torch": torch_version,
        "sizes": {
            size: {"arch": SIZES[size].arch, "depth": len(factors), "log_factors": logs, "factors": factors}
            for size, (logs, factors) in draws.items()
        },
    }


def write_factors(path: str | Path, document: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def read_factors(path: str | Path, size: str) -> tuple[float, ...]:
    """The per-block factors of `size` ("small", "base", "large"); ValueError naming what is wrong."""
    document = json.loads(Path(path).read_text())
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: not an {FORMAT} file (format {document.get('format')!r})")
    entry = document["sizes"].get(size)
    if entry is None:
        raise ValueError(f"{path}: no factors for {size!r} (it has {', '.join(document['sizes'])})")
    if len(entry["factors"]) != SIZES[size].depth:
        raise ValueError(f"{path}: {len(entry['factors'])} factors for {size!r}, whose depth is {SIZES[size].depth}")
    return tuple(float(f) for f in entry["factors"])
