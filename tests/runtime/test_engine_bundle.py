"""The bundle format as the runtime reads it: round trip and every way a folder can be wrong."""

import json

import numpy as np
import pytest

from insid3.errors import BundleError, SettingsError
from insid3.format.bundle import (
    BASIS_FILE,
    FORMAT_VERSION,
    METADATA_FILE,
    ONNX_FILE,
    BundleMetadata,
    WeightsSource,
    describe_file,
    load_bundle,
    write_metadata,
)
from insid3.format.settings import Hyperparameters


def _metadata(folder, embed_dim=8, resolution=64):
    (folder / ONNX_FILE).write_bytes(b"onnx")
    grid = resolution // 16
    np.save(folder / BASIS_FILE, np.eye(embed_dim, min(embed_dim, grid * grid), dtype=np.float32))
    return BundleMetadata(
        size="custom", arch="dinov3_custom", resolution=resolution, patch_size=16, embed_dim=embed_dim,
        patch_grid=(grid, grid), defaults=Hyperparameters(svd_components=3),
        weights=WeightsSource(kind="random-init", seed=7), opset=18,
        artifacts=(describe_file(folder, ONNX_FILE, kind="onnx", precision="fp32",
                                 parity={"against": "torch", "max_abs_error": 1e-6}),),
        tool_version="0.1.0", created_at="2026-11-22T00:00:00Z",
    )


def test_metadata_round_trip(tmp_path):
    meta = _metadata(tmp_path)
    write_metadata(tmp_path, meta)
    bundle = load_bundle(tmp_path)
    assert bundle.metadata == meta
    assert bundle.metadata.num_patches == 16
    assert bundle.positional_basis().shape == (8, 8)
    assert bundle.metadata.artifact("onnx").sha256 == meta.artifacts[0].sha256


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nothing")


def test_a_file_given_as_the_bundle_is_named(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="model.onnx is a file: a bundle is the folder insid3-export writes"):
        load_bundle(tmp_path / "model.onnx")


def test_folder_without_metadata(tmp_path):
    with pytest.raises(BundleError, match=f"{METADATA_FILE} is missing"):
        load_bundle(tmp_path)


def test_other_format_version_is_refused(tmp_path):
    write_metadata(tmp_path, _metadata(tmp_path))
    data = json.loads((tmp_path / METADATA_FILE).read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (tmp_path / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=f"format version {FORMAT_VERSION + 1} is not supported"):
        load_bundle(tmp_path)


def test_incomplete_bundle_names_missing_files(tmp_path):
    write_metadata(tmp_path, _metadata(tmp_path))
    (tmp_path / ONNX_FILE).unlink()
    with pytest.raises(BundleError, match=f"incomplete: missing {ONNX_FILE}"):
        load_bundle(tmp_path)


def test_malformed_metadata(tmp_path):
    write_metadata(tmp_path, _metadata(tmp_path))
    data = json.loads((tmp_path / METADATA_FILE).read_text())
    del data["embed_dim"]
    (tmp_path / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="malformed"):
        load_bundle(tmp_path)
    (tmp_path / METADATA_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_basis_of_the_wrong_shape(tmp_path):
    write_metadata(tmp_path, _metadata(tmp_path))
    np.save(tmp_path / BASIS_FILE, np.zeros((5, 5), np.float32))
    with pytest.raises(BundleError, match=r"expected float32 \(8, 8\), got float32 \(5, 5\)"):
        load_bundle(tmp_path).positional_basis()


@pytest.mark.parametrize(
    "settings, message",
    [
        (Hyperparameters(svd_components=8), "svd_components=8 must be in"),
        (Hyperparameters(svd_components=-1), "svd_components=-1"),
        (Hyperparameters(svd_components=2, tau=0.0), "tau=0.0"),
        (Hyperparameters(svd_components=2, merge_threshold=2.0), "merge_threshold=2.0"),
    ],
)
def test_hyperparameters_are_validated(settings, message):
    with pytest.raises(SettingsError, match=message):
        settings.validated(embed_dim=8)


def _recorded(folder):
    write_metadata(folder, _metadata(folder))
    return folder


def test_a_truncated_artifact_is_named_with_both_sizes(tmp_path):
    _recorded(tmp_path)
    (tmp_path / ONNX_FILE).write_bytes(b"onn")
    with pytest.raises(BundleError, match=rf"{ONNX_FILE} is 3 bytes but insid3.json records 4"):
        load_bundle(tmp_path)


def test_a_damaged_artifact_of_the_right_size_fails_its_sha256(tmp_path):
    _recorded(tmp_path)
    (tmp_path / ONNX_FILE).write_bytes(b"onnX")
    with pytest.raises(BundleError, match=rf"{ONNX_FILE} does not match the sha256 recorded"):
        load_bundle(tmp_path)


def test_a_verified_file_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    import os

    from insid3.format import verify

    _recorded(tmp_path)
    hashed = []
    real = verify.sha256_of
    monkeypatch.setattr(verify, "sha256_of", lambda path: hashed.append(path.name) or real(path))
    load_bundle(tmp_path)
    load_bundle(tmp_path)
    assert hashed == [ONNX_FILE] and (tmp_path / verify.VERIFIED_FILE).is_file()
    stat = (tmp_path / ONNX_FILE).stat()
    os.utime(tmp_path / ONNX_FILE, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    load_bundle(tmp_path)  # same bytes, newer mtime: hashed again, still valid
    assert hashed == [ONNX_FILE, ONNX_FILE]
    (tmp_path / ONNX_FILE).write_bytes(b"XXXX")  # replaced in place: never trusted from the cache
    with pytest.raises(BundleError, match="does not match the sha256"):
        load_bundle(tmp_path)


def test_a_bundle_that_cannot_be_written_is_verified_without_failing(tmp_path, monkeypatch):
    """A read-only bundle (a shared mount): the digest cache cannot be saved, loading still works."""
    from insid3.format import verify

    def refuse(*_):
        raise PermissionError("read-only file system")

    _recorded(tmp_path)
    monkeypatch.setattr(verify.os, "replace", refuse)
    assert load_bundle(tmp_path).metadata.artifact("onnx") is not None
    assert not (tmp_path / verify.VERIFIED_FILE).exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_a_damaged_basis_file_is_a_bundle_error(tmp_path):
    _recorded(tmp_path)
    (tmp_path / BASIS_FILE).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(BundleError, match=f"{BASIS_FILE} cannot be read"):
        load_bundle(tmp_path).positional_basis()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_model_its_backend_cannot_read_is_a_bundle_error(tiny_bundle, tmp_path, backend):
    """Recorded digests match (the file was exported that way), but the library refuses it."""
    import shutil

    from insid3.engine import Segmenter

    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    (bundle / ONNX_FILE).write_bytes(b"\x08\x07 not a protobuf model")
    meta = load_bundle(bundle, verify=False).metadata
    artifacts = tuple(describe_file(bundle, ONNX_FILE, kind="onnx", precision="fp32") if a.kind == "onnx" else a
                      for a in meta.artifacts)
    write_metadata(bundle, meta.with_artifacts(artifacts))
    with pytest.raises(BundleError, match=rf"the {backend} backend cannot load its model .*re-export") as error:
        Segmenter.from_bundle(bundle, backend=backend)
    assert "\n" not in str(error.value)
