"""Segmenter.match on an exported bundle against the transcription of the authors' match()."""

import numpy as np
import pytest

from insid3.engine import Segmenter
from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.runtime.correspondence import MatchOptions, check_points
from insid3.errors import KeypointError, SettingsError

torch = pytest.importorskip("torch")
from insid3 import authors_way  # noqa: E402  (needs torch)
from insid3.authors_way import correspondence as aw  # noqa: E402

POINTS = [(5, 20), (7, 50), (95, 63), (40.5, 31.25), (0, 0), (96, 64)]  # the reference is 96 x 64 (W x H)


@pytest.fixture(scope="module")
def images():
    (reference, first), (_, second) = scene_pairs(2, size=(64, 96), seed=3)
    other = scene_pairs(1, size=(90, 60), seed=4)[0][1]
    return reference.image, [first.image, second.image, other.image]


def authors_basis(tiny_bundle, s):
    from insid3.format.bundle import load_bundle

    return torch.from_numpy(load_bundle(tiny_bundle).positional_basis()[:, :s].copy())


@pytest.mark.parametrize("debiased", [True, False])
def test_matches_equal_the_transcription_on_the_same_features(segmenter, authors, images, debiased):
    """The engine's matching fed the authors' own features: the same argmax cells, the same
    coordinates to float32 rounding."""
    reference, targets = images
    source = authors_way.preprocess_image(authors, reference)
    for target in targets:
        prepared = authors_way.preprocess_image(authors, target)
        features = authors_way.encode_together(authors, [source, prepared])
        expected = aw.match_features(
            features[0], features[1], torch.tensor(POINTS, dtype=torch.float32), source_size=source.original_size,
            target_size=prepared.original_size, grid=authors.patch_grid, basis=authors.basis if debiased else None,
        ).numpy()
        encoded = segmenter.matcher.encode([source])[0]  # for its size and fingerprint
        encoded = type(encoded)(features[0].numpy(), source.original_size, encoded.fingerprint)
        ours = segmenter.matcher.correspond(
            encoded, check_points(POINTS, source.original_size), features[1].numpy(), prepared.original_size,
            MatchOptions(debiased=debiased),
        )
        np.testing.assert_allclose(ours.points, expected, atol=2e-3, rtol=0)
        assert ours.points.dtype == np.float32 and ours.points.shape == (len(POINTS), 2)


def test_match_through_the_backend_equals_the_authors_match(segmenter, authors, images):
    reference, targets = images
    for target in targets:
        expected = aw.match(authors, reference, target, POINTS)
        np.testing.assert_allclose(segmenter.match(reference, POINTS, target), expected, atol=0.05, rtol=0)
        original = aw.match(authors, reference, target, POINTS, debiased=False)
        np.testing.assert_allclose(segmenter.match(reference, POINTS, target, debiased=False), original, atol=0.05)


def test_svd_components_is_a_per_call_choice(tiny_bundle, segmenter, authors, images):
    reference, targets = images
    source = authors_way.preprocess_image(authors, reference)
    prepared = authors_way.preprocess_image(authors, targets[0])
    features = authors_way.encode_together(authors, [source, prepared])
    results = {}
    for s in (3, 20, segmenter.hyperparameters.svd_components):
        expected = aw.match_features(
            features[0], features[1], torch.tensor(POINTS, dtype=torch.float32), source_size=source.original_size,
            target_size=prepared.original_size, grid=authors.patch_grid, basis=authors_basis(tiny_bundle, s),
        ).numpy()
        results[s] = segmenter.match(reference, POINTS, targets[0], svd_components=s)
        np.testing.assert_allclose(results[s], expected, atol=0.05)
    assert not np.allclose(results[3], results[20], atol=0.5), "s changed nothing: the test proves nothing"
    with pytest.raises(SettingsError, match="svd_components=128"):
        segmenter.match(reference, POINTS, targets[0], svd_components=128)  # C = 128


def test_an_encoded_reference_is_reused_and_targets_are_batched(tiny_bundle, images):
    segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    reference, targets = images
    encoded = segmenter.encode_image(reference)
    batched = segmenter.match(encoded, POINTS, targets, batch_size=2)
    singles = [segmenter.match(encoded, POINTS, target) for target in targets]
    assert segmenter.images_encoded == {"reference": 1, "target": 2 * len(targets)}
    assert isinstance(batched, list) and len(batched) == len(targets)
    for ours, single in zip(batched, singles):
        np.testing.assert_allclose(ours, single, atol=1e-4)
    assert set(segmenter.matcher.last_timings) == {"preprocess", "backbone", "debias", "matching"}
    # A 90 x 60 target: the match lies inside that image, x against its width.
    assert (batched[2][:, 0] <= 60).all() and (batched[2][:, 1] <= 90).all()


def test_details_carry_peaks_and_source_cells(segmenter, images):
    reference, targets = images
    (found,) = segmenter.matcher.match(reference, POINTS, targets[:1])
    assert found.peak_similarity.shape == (len(POINTS),) and (np.abs(found.peak_similarity) <= 1 + 1e-5).all()
    assert found.source_cells[:3].tolist() == aw.snap_keypoints(torch.tensor(POINTS[:3], dtype=torch.float32),
                                                              (64, 96), (14, 14)).tolist()
    assert found.target_size == (64, 96)


@pytest.mark.parametrize("points, message", [
    ([], "no points given"),
    ([(1, 2), (float("nan"), 3)], r"point 1 \(nan, 3\) is not a finite number"),
    ([(1, 2), (3, 4), (97, 10)], r"point 2 \(97, 10\) lies outside the reference image \(96x64, WxH\)"),
    ([(1, -0.5)], r"point 0 \(1, -0.5\) lies outside"),
    ([(1, 2, 3)], "must be \\(x, y\\) pairs"),
    ([(1, 2), (3,)], "sequence of \\(x, y\\) number pairs"),
    ("a,b", "sequence of \\(x, y\\) number pairs"),
])
def test_bad_points_are_one_error_naming_the_point(segmenter, images, points, message):
    reference, targets = images
    with pytest.raises(KeypointError, match=message):
        segmenter.match(reference, points, targets[0])


def test_an_image_encoded_by_another_backbone_is_refused(segmenter, images):
    from dataclasses import replace

    from insid3.engine.runtime.correspondence import FeatureFingerprint

    encoded = segmenter.encode_image(images[0])
    foreign = replace(encoded, fingerprint=FeatureFingerprint(model_sha256="0" * 64, resolution=224))
    with pytest.raises(SettingsError, match="another backbone or resolution"):
        segmenter.match(foreign, POINTS, images[1][0])
