"""The analytic FLOP count of the backbone and the device floor it implies."""

import pytest

from insid3.benchmarks.flops import backbone_flops, device_peak, floor_ms, flops_for_arch, roofline


def test_small_at_224_matches_a_hand_count():
    # ViT-S/16 at 224 px: N = 14 * 14 = 196 patches, T = 196 + 1 CLS + 4 registers = 201 tokens,
    # C = 384, MLP hidden 1536, 12 blocks; a multiply-add counts 2.
    patch_embed = 2 * 196 * (3 * 16 * 16) * 384  # 115,605,504
    qkv = 12 * 2 * 201 * 384 * 1152  # 2,133,983,232
    scores = values = 12 * 2 * 201 * 201 * 384  # 372,335,616 each
    projection = 12 * 2 * 201 * 384 * 384  # 711,327,744
    mlp = 12 * 2 * 2 * 201 * 384 * 1536  # 5,690,621,952
    assert patch_embed + qkv + scores + values + projection + mlp == 9_396_209_664

    flops = flops_for_arch("small", 224)
    assert flops.total == 9_396_209_664
    assert (flops.patch_embed, flops.qkv, flops.attention_scores, flops.mlp) == (patch_embed, qkv, scores, mlp)
    assert flops.gflops == pytest.approx(9.396209664)


def test_attention_grows_quadratically_and_the_rest_linearly():
    def count(resolution):
        return backbone_flops(embed_dim=64, depth=1, mlp_dim=256, patch_size=16, prefix_tokens=0,
                              resolution=resolution)

    small, large = count(256), count(512)  # 256 -> 1024 tokens: 4x the tokens
    assert large.attention_scores == 16 * small.attention_scores
    assert large.qkv == 4 * small.qkv and large.mlp == 4 * small.mlp


def test_presets_order_and_bundle_arch_strings():
    assert flops_for_arch("small", 768).total < flops_for_arch("base", 768).total < flops_for_arch("large", 768).total
    assert flops_for_arch("dinov3_vitl16", 1024) == flops_for_arch("large", 1024)
    # ViT-L at 1024 px, the paper's setting, is about 4.1 TFLOP per image.
    assert 4.0e12 < flops_for_arch("large", 1024).total < 4.3e12


def test_device_peaks_and_floor():
    assert device_peak("NVIDIA H100 PCIe")[0] == 756.0  # PCIe is matched before the SXM entry
    assert device_peak("NVIDIA H100 80GB HBM3")[0] == pytest.approx(989.4)
    assert device_peak("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert device_peak("NVIDIA GeForce RTX 4090")[0] == pytest.approx(165.2)
    assert device_peak("Intel(R) Xeon(R) Processor") is None and device_peak(None) is None
    assert floor_ms(10**12, 1000.0) == pytest.approx(1.0)  # 1 TFLOP at 1000 TFLOP/s: 1 ms

    flops = flops_for_arch("small", 768)
    block = roofline(flops, "NVIDIA L4", backbone_ms=20.0)
    assert block["floor_ms"] == pytest.approx(flops.total / 121e12 * 1e3)
    assert block["fraction_of_peak"] == pytest.approx(block["floor_ms"] / 20.0)
    assert roofline(flops, None, backbone_ms=20.0)["floor_ms"] is None
