"""The backbone's FLOPs, counted analytically, and the floor they imply on a known GPU.

Counted (1 multiply-add = 2 FLOPs), per image, T = N + 1 CLS + registers tokens:
- patch embedding: a p x p x 3 -> C linear map per patch: 2 * N * 3p^2 * C;
- per block: qkv 2*T*C*3C; attention scores Q K^T 2*T*T*C (all heads together); attention
  times values A V 2*T*T*C; output projection 2*T*C*C; MLP 2*T*C*M + 2*T*M*C (M = hidden width).
Not counted (each O(T*C), together well under 1% at 768 px): LayerNorms, softmax, RoPE, GELU,
biases, layer scale, residual adds, the final norm and the L2 normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Dense (no structured sparsity) bf16/fp16 tensor-core peaks in TFLOP/s, the marketing "with
# sparsity" figure halved. Matched against the GPU's name, first match wins (PCIe/NVL before SXM).
DEVICE_PEAK_TFLOPS: tuple[tuple[str, str, float, str], ...] = (
    # (name substring to match, label, dense TFLOP/s, source)
    # NVIDIA H100 Tensor Core GPU datasheet: BF16/FP16 1,513 TFLOPS with sparsity (PCIe)
    ("H100 PCIe", "H100 PCIe", 756.0, "NVIDIA H100 datasheet, PCIe, dense BF16/FP16"),
    # same datasheet: H100 NVL 1,671 TFLOPS with sparsity per GPU
    ("H100 NVL", "H100 NVL", 835.0, "NVIDIA H100 datasheet, NVL, dense BF16/FP16"),
    # same datasheet: H100 SXM 1,979 TFLOPS with sparsity
    ("H100", "H100 SXM", 989.4, "NVIDIA H100 datasheet, SXM, dense BF16/FP16"),
    # NVIDIA H200 datasheet: BF16/FP16 1,979 TFLOPS with sparsity (SXM)
    ("H200", "H200 SXM", 989.4, "NVIDIA H200 datasheet, SXM, dense BF16/FP16"),
    # NVIDIA A100 datasheet: BF16/FP16 Tensor Core 312 TFLOPS (624 with sparsity)
    ("A100", "A100", 312.0, "NVIDIA A100 datasheet, dense BF16/FP16"),
    # NVIDIA L4 datasheet: FP16/BF16 Tensor Core 242 TFLOPS with sparsity
    ("L4", "L4", 121.0, "NVIDIA L4 datasheet, dense BF16/FP16"),
    # NVIDIA Ada Lovelace architecture whitepaper, appendix table for the RTX 4090: 165.2 FP16/BF16
    # tensor TFLOPS with FP32 accumulate (330.3 with FP16 accumulate, which BF16 does not have)
    ("RTX 4090", "RTX 4090", 165.2, "NVIDIA Ada Lovelace whitepaper, RTX 4090, dense FP16/BF16, FP32 accumulate"),
)


@dataclass(frozen=True)
class BackboneFlops:
    """FLOPs of one image's forward pass, by kind of work (all blocks together)."""

    patch_embed: int
    qkv: int
    attention_scores: int
    attention_values: int
    projection: int
    mlp: int

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def backbone_flops(
    *, embed_dim: int, depth: int, mlp_dim: int, patch_size: int, prefix_tokens: int, resolution: int
) -> BackboneFlops:
    c, m = embed_dim, mlp_dim
    patches = (resolution // patch_size) ** 2
    tokens = patches + prefix_tokens
    return BackboneFlops(
        patch_embed=2 * patches * 3 * patch_size**2 * c,
        qkv=depth * 2 * tokens * c * 3 * c,
        attention_scores=depth * 2 * tokens * tokens * c,
        attention_values=depth * 2 * tokens * tokens * c,
        projection=depth * 2 * tokens * c * c,
        mlp=depth * 2 * 2 * tokens * c * m,
    )


def flops_for_arch(arch_or_size: str, resolution: int) -> BackboneFlops:
    """FLOPs of a preset size ("small") or a bundle's arch string (config imported lazily)."""
    from insid3.export.config import config_for

    config = config_for(arch_or_size)
    return backbone_flops(
        embed_dim=config.embed_dim,
        depth=config.depth,
        mlp_dim=config.mlp_dim,
        patch_size=config.patch_size,
        prefix_tokens=config.num_prefix_tokens,
        resolution=resolution,
    )


def device_peak(device_name: str | None) -> tuple[float, str] | None:
    """(dense bf16/fp16 TFLOP/s, source) for a known GPU name, else None (CPUs, unknown GPUs)."""
    if not device_name:
        return None
    for key, _, tflops, source in DEVICE_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops, source
    return None


def floor_ms(flops: int, peak_tflops: float) -> float:
    """The time the FLOPs take at the device's peak: no implementation can be faster."""
    return flops / (peak_tflops * 1e12) * 1e3


def roofline(flops: BackboneFlops, device_name: str | None, backbone_ms: float | None) -> dict:
    """The JSON block: FLOPs, the device's peak and floor where known, and the fraction reached."""
    block = {"backbone_gflops_per_image": flops.gflops, "device": device_name,
             "peak_tflops": None, "peak_source": None, "floor_ms": None, "fraction_of_peak": None}
    peak = device_peak(device_name)
    if peak is not None:
        block["peak_tflops"], block["peak_source"] = peak
        block["floor_ms"] = floor_ms(flops.total, peak[0])
        if backbone_ms:
            block["fraction_of_peak"] = block["floor_ms"] / backbone_ms
    return block
