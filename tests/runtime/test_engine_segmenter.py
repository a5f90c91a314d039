"""The Segmenter API on a tiny exported bundle: references, caching, multi-shot, batches, errors."""

import numpy as np
import pytest

from insid3.engine import Segmenter
from insid3.engine.jobs.scenes import draw_scene, scene_pairs
from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.timing import STAGES
from insid3.errors import (
    BackendUnavailableError,
    BundleError,
    InputImageError,
    NoReferenceError,
    ReferenceMaskError,
    SettingsError,
)


@pytest.fixture(scope="module")
def pair():
    return scene_pairs(1, size=(120, 160))[0]


def test_segment_returns_a_bool_mask_at_the_targets_size(segmenter, pair):
    reference, target = pair
    segmenter.set_reference(reference.image, reference.mask)
    mask = segmenter.segment(target.image)
    assert mask.dtype == bool and mask.shape == target.image.shape[:2]
    assert set(segmenter.last_timings) == set(STAGES)
    assert all(ms >= 0 for ms in segmenter.last_timings.values())


def test_the_reference_is_encoded_once_for_many_targets(tiny_bundle, pair):
    seg = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    reference, target = pair
    seg.set_reference(reference.image, reference.mask)
    for _ in range(3):
        seg.segment(target.image)
    seg.segment_batch([target.image] * 4, batch_size=3)
    assert seg.images_encoded == {"reference": 1, "target": 7}


def test_batch_equals_one_by_one(segmenter, pair):
    reference, _ = pair
    segmenter.set_reference(reference.image, reference.mask)
    targets = [draw_scene(seed, (100 + 10 * seed, 140), concept=0).image for seed in range(5)]
    singles = [segmenter.segment(t) for t in targets]
    batched = segmenter.segment_batch(targets, batch_size=2)
    assert len(batched) == 5
    for one, many in zip(singles, batched):
        np.testing.assert_array_equal(one, many)


def test_add_reference_makes_a_multi_shot_reference(segmenter, pair):
    reference, target = pair
    other = draw_scene(99, (120, 160), concept=reference.concept)
    segmenter.set_reference(reference.image, reference.mask)
    assert segmenter.reference.shots == 1
    segmenter.add_reference(other.image, other.mask)
    assert segmenter.reference.shots == 2
    both = segmenter.encode_reference([(reference.image, reference.mask), (other.image, other.mask)])
    np.testing.assert_allclose(both.prototype, segmenter.reference.prototype, atol=1e-6)
    np.testing.assert_array_equal(segmenter.segment(target.image), segmenter.segment(target.image, both))
    segmenter.set_reference(reference.image, reference.mask)
    assert segmenter.reference.shots == 1


def test_explicit_reference_leaves_the_segmenters_own_alone(segmenter, pair):
    reference, target = pair
    segmenter.clear_references()
    standalone = segmenter.encode_reference([(reference.image, reference.mask)])
    assert isinstance(standalone, Reference) and segmenter.reference is None
    assert segmenter.segment(target.image, standalone).shape == target.mask.shape


def test_segment_before_any_reference(segmenter, pair):
    segmenter.clear_references()
    with pytest.raises(NoReferenceError, match="set_reference"):
        segmenter.segment(pair[1].image)


def test_mask_of_the_wrong_size(segmenter, pair):
    reference, _ = pair
    with pytest.raises(InputImageError, match="160x120"):
        segmenter.set_reference(reference.image, reference.mask[:, :100])


def test_empty_reference_mask(segmenter, pair):
    with pytest.raises(ReferenceMaskError, match="empty"):
        segmenter.set_reference(pair[0].image, np.zeros_like(pair[0].mask))


def test_corrupt_target(segmenter, pair, tmp_path):
    segmenter.set_reference(pair[0].image, pair[0].mask)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputImageError, match="broken.png"):
        segmenter.segment(bad)


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        Segmenter.from_bundle(tmp_path / "none")


def test_unknown_backend(tiny_bundle):
    with pytest.raises(BackendUnavailableError, match="unknown backend 'cuda-magic'.*onnxruntime"):
        Segmenter.from_bundle(tiny_bundle, backend="cuda-magic")


def test_gpu_backend_without_a_gpu(tiny_bundle):
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("cupy is installed: this test is about machines without the GPU stack")
    with pytest.raises(BackendUnavailableError, match="backend 'tensorrt' cannot run here: .*available here: .*onnxruntime"):
        Segmenter.from_bundle(tiny_bundle, backend="tensorrt")


def test_svd_components_must_be_below_the_width(tiny_bundle):
    import json

    width = json.loads((tiny_bundle / "insid3.json").read_text())["embed_dim"]
    with pytest.raises(SettingsError, match=f"svd_components={width} must be in"):
        Segmenter.from_bundle(tiny_bundle, svd_components=width)


def test_hyperparameters_default_to_the_bundles(tiny_bundle):
    import json

    defaults = json.loads((tiny_bundle / "insid3.json").read_text())["defaults"]
    seg = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", tau=0.5)
    assert seg.hyperparameters.svd_components == defaults["svd_components"]
    assert seg.hyperparameters.tau == 0.5


def test_auto_picks_the_fastest_installed_cpu_backend_and_says_so(tiny_bundle, caplog):
    import importlib.util
    import logging

    caplog.set_level(logging.INFO, logger="insid3.engine")
    seg = Segmenter.from_bundle(tiny_bundle, backend="auto")
    expected = "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"
    assert seg.backend.name == expected and seg.backend.device == "cpu"
    assert f"backend {expected} on cpu" in caplog.text
    assert expected in seg.describe()


def test_bf16_is_refused_by_the_fp32_only_backends(tiny_bundle):
    with pytest.raises(BackendUnavailableError, match="runs the fp32 ONNX model only, not bf16"):
        Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", precision="bf16")


def test_openvino_bf16_runs_where_the_cpu_supports_it(tiny_bundle, pair):
    pytest.importorskip("openvino")
    from insid3.engine.runtime.backends.openvino_backend import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        with pytest.raises(BackendUnavailableError, match="no bf16 support"):
            Segmenter.from_bundle(tiny_bundle, backend="openvino", precision="bf16")
        return
    seg = Segmenter.from_bundle(tiny_bundle, backend="openvino", precision="bf16")
    assert seg.backend.precision == "bf16"
    seg.set_reference(pair[0].image, pair[0].mask)
    assert seg.segment(pair[1].image).shape == pair[1].mask.shape


def test_a_reference_from_another_debias_frame_is_refused(tiny_bundle, segmenter, pair):
    """Same bundle, another svd_components: the widths differ, the fingerprint names both."""
    reference, target = pair
    other = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", svd_components=1)
    foreign = other.encode_reference([(reference.image, reference.mask)])
    assert foreign.fingerprint.svd_components == 1
    with pytest.raises(SettingsError, match=r"svd_components=1\).*svd_components=\d+\)"):
        segmenter.segment(target.image, reference=foreign)
    with pytest.raises(SettingsError, match="another bundle or debias frame"):
        segmenter.segment_batch([target.image], reference=foreign)


def test_a_reference_from_another_bundle_of_the_same_width_is_refused(tmp_path, segmenter, pair):
    """Another model's features fit the kernels' shapes exactly, and would give wrong masks."""
    from support.export_fixtures import make_tiny_bundle

    reference, target = pair
    other = Segmenter.from_bundle(make_tiny_bundle(tmp_path, resolution=224, seed=1), backend="onnxruntime")
    assert other.hyperparameters == segmenter.hyperparameters
    foreign = other.encode_reference([(reference.image, reference.mask)])
    assert foreign.debiased.shape == segmenter.encode_reference([(reference.image, reference.mask)]).debiased.shape
    with pytest.raises(SettingsError, match="another bundle or debias frame"):
        segmenter.segment(target.image, reference=foreign)


def test_a_reference_from_an_identical_export_is_accepted(tmp_path, tiny_bundle, segmenter, pair):
    """A copy of the bundle (same model and basis files) encodes interchangeable references."""
    import shutil

    reference, target = pair
    copy = Segmenter.from_bundle(shutil.copytree(tiny_bundle, tmp_path / "copy"), backend="onnxruntime")
    foreign = copy.encode_reference([(reference.image, reference.mask)])
    own = segmenter.encode_reference([(reference.image, reference.mask)])
    np.testing.assert_array_equal(segmenter.segment(target.image, reference=foreign),
                                  segmenter.segment(target.image, reference=own))
