"""The per-block RoPE rescale factors of DINOv3's training-mode forward: the draw, its CPU
prediction of the CUDA values (Philox4x32-10), and their file. The CUDA comparison is marked gpu."""

import json

import numpy as np
import pytest
import torch

from insid3.export.config import SIZES
from insid3.export.rope_rescale import (
    FORMAT,
    draw_rescale,
    factors_document,
    philox4x32_10,
    predicted_cuda_factors,
    predicted_log_factors,
    read_factors,
    write_factors,
)


@pytest.mark.parametrize(("counter", "key", "expected"), [
    # Random123's known-answer vectors for philox4x32 with 10 rounds
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_matches_the_known_answers(counter, key, expected):
    assert philox4x32_10(counter, key) == expected


def test_the_predicted_draws_are_log_uniform_in_half_to_two_one_per_block():
    logs, factors = predicted_log_factors(24), predicted_cuda_factors(24)
    assert len(set(logs)) == 24 and all(-np.log(2) <= u < np.log(2) for u in logs)
    assert all(0.5 <= f <= 2.0 for f in factors)
    assert predicted_log_factors(12) == logs[:12]  # every size starts from the same seeded draws
    assert predicted_log_factors(12, seed=1) != logs[:12]
    # the first draw after manual_seed(0) is torch.rand's 0.39905... on CUDA, mapped to [-ln 2, ln 2)
    assert logs[0] == pytest.approx(0x6627E8D5 / 2**32 * 2 * np.log(2) - np.log(2), abs=1e-6)


def test_the_draw_follows_the_hub_order_on_any_device():
    logs, factors = draw_rescale(3, device="cpu", seed=0)
    assert draw_rescale(3, device="cpu", seed=0) == (logs, factors)  # reseeded: the same draws
    assert factors == [pytest.approx(float(np.exp(np.float32(u))), rel=1e-6) for u in logs]
    assert logs != predicted_log_factors(3)  # the CPU generator is another generator: CUDA is needed


def test_the_file_is_read_back_by_size_and_checked(tmp_path):
    draws = {size: (predicted_log_factors(SIZES[size].depth), predicted_cuda_factors(SIZES[size].depth))
             for size in ("small", "large")}
    path = write_factors(tmp_path / "rope.json", factors_document(
        draws, seed=0, source="CPU prediction", device="none", torch_version=torch.__version__))
    assert read_factors(path, "large") == tuple(draws["large"][1])
    document = json.loads(path.read_text())
    assert document["format"] == FORMAT and document["sizes"]["small"]["arch"] == "dinov3_vits16"
    with pytest.raises(ValueError, match="no factors for 'base' \\(it has small, large\\)"):
        read_factors(path, "base")
    document["sizes"]["large"]["factors"] = document["sizes"]["large"]["factors"][:5]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="5 factors for 'large', whose depth is 24"):
        read_factors(path, "large")
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not an insid3-rope-rescale/1 file"):
        read_factors(path, "large")


@pytest.mark.gpu
def test_cuda_draws_equal_the_prediction():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    logs, factors = draw_rescale(24, device="cuda", seed=0)
    assert logs == predicted_log_factors(24)
    predicted = np.array(predicted_cuda_factors(24), np.float32)
    assert np.abs(np.array(factors, np.float32).view(np.int32) - predicted.view(np.int32)).max() <= 1  # expf: 1 ulp
