"""ONNX export on tiny configs: graph contract, ORT vs torch, the bundle metadata, checkpoints."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np
import onnx
import pytest
import torch
from support.export_fixtures import (
    TINY,
    make_tiny_bundle,
    meta_state_dict,
    transformers_features,
    transformers_model,
    write_meta_checkpoint,
)

from insid3.errors import ExportError, SettingsError
from insid3.export import ExportSettings, build_backbone, export_bundle
from insid3.export.onnx_export import run_onnxruntime
from insid3.export.positional_basis import positional_basis
from insid3.format.bundle import load_bundle, sha256_of


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("export"), resolution=224, seed=0)


def test_graph_is_clean_with_a_dynamic_batch_axis(tiny_bundle):
    model = onnx.load(str(tiny_bundle / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    ops = [node.op_type for node in model.graph.node]
    assert not {"If", "Loop", "Scan"} & set(ops)  # TensorRT rejects the If that `tile` makes
    assert ops.count("LayerNormalization") == 2 * TINY.depth + 1  # one op each (opset >= 17)
    assert ops.count("Softmax") == TINY.depth
    assert [o.version for o in model.opset_import if o.domain == ""] == [18]
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp)) == ("pixel_values", ["batch", 3, 224, 224])
    assert (out.name, dims(out)) == ("features", ["batch", 196, 128])
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_the_rebuilt_torch_model(tiny_bundle, batch):
    meta = load_bundle(tiny_bundle).metadata
    model = build_backbone(meta.arch, meta.weights, resolution=meta.resolution)
    pixels = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(pixels)).numpy()
    actual = run_onnxruntime(tiny_bundle / "model.onnx", pixels)
    assert actual.shape == (batch, 196, 128)
    assert np.abs(actual - expected).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(actual, axis=-1), 1.0, atol=1e-5)


def test_metadata_round_trips_through_load_bundle(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    meta = bundle.metadata
    assert (meta.size, meta.arch, meta.resolution, meta.patch_size) == ("tiny", TINY.arch, 224, 16)
    assert (meta.embed_dim, meta.patch_grid, meta.num_patches, meta.opset) == (128, (14, 14), 196, 18)
    assert (meta.defaults.svd_components, meta.defaults.tau, meta.defaults.merge_threshold) == (62, 0.6, 0.2)
    assert (meta.weights.kind, meta.weights.seed, meta.weights.sha256) == ("random-init", 0, None)
    assert meta.mean == (0.485, 0.456, 0.406) and meta.std == (0.229, 0.224, 0.225)
    assert meta.tool_version and datetime.fromisoformat(meta.created_at).tzinfo is not None
    assert [a.kind for a in meta.artifacts] == ["onnx", "positional_basis"]
    for artifact in meta.artifacts:
        assert artifact.sha256 == sha256_of(tiny_bundle / artifact.file)
        assert artifact.bytes == (tiny_bundle / artifact.file).stat().st_size
    onnx_artifact = meta.artifact("onnx")
    assert onnx_artifact.parity["against"] == "torch" and onnx_artifact.parity["batch"] == 2
    assert 0 <= onnx_artifact.parity["max_abs_error"] <= 1e-4 and onnx_artifact.parity["min_cosine"] > 0.9999
    assert meta.artifact("tensorrt") is None


def test_positional_basis_is_the_svd_of_the_black_image_features(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    basis = bundle.positional_basis()  # validates float32 (C, min(C, N))
    assert basis.shape == (128, 128)
    np.testing.assert_allclose(basis.T @ basis, np.eye(128), atol=1e-5)
    meta = bundle.metadata
    again = positional_basis(build_backbone(meta.arch, meta.weights, resolution=224), 224)
    # Singular vectors are defined up to sign; compare the leading, well-separated ones.
    leading = np.abs(np.sum(basis[:, :8] * again[:, :8], axis=0))
    np.testing.assert_allclose(leading, 1.0, atol=1e-4)


def test_meta_checkpoint_through_onnx_matches_transformers(tmp_path, tiny_bundle):
    """Our ONNX (ONNX Runtime) on a Meta .pth vs transformers on the same weights, converted by name.

    It is written over a copy of the tiny bundle: refused without --force, replaced with it.
    """
    path = write_meta_checkpoint(tmp_path / "dinov3_tiny.pth", TINY, seed=5)
    out = tmp_path / "bundle"
    import shutil

    shutil.copytree(tiny_bundle, out)
    settings = ExportSettings(model=TINY, resolution=224, out_dir=out, weights=path, trt=False)
    with pytest.raises(ExportError, match="already holds a bundle: pass --force"):
        export_bundle(settings)
    lines: list[str] = []
    export_bundle(dataclasses.replace(settings, force=True), report=lines.append)
    assert any(line.startswith("[5/5] positional basis") for line in lines)
    assert any("TensorRT engine skipped: --no-trt" in line for line in lines)

    meta = load_bundle(out).metadata
    assert (meta.weights.kind, meta.weights.sha256) == ("meta-hub", sha256_of(path))
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    reference = transformers_features(transformers_model(TINY, meta_state_dict(TINY, seed=5)), pixels, TINY)
    ours = run_onnxruntime(out / "model.onnx", pixels.numpy())
    assert np.abs(ours - reference.numpy()).max() <= 1e-4
    assert not any(p.name.startswith(".bundle.partial") for p in tmp_path.iterdir())


def test_parity_above_tolerance_fails_loudly_and_leaves_nothing(tmp_path):
    settings = ExportSettings(model=TINY, resolution=224, out_dir=tmp_path / "b", random_init=True,
                              trt=False, onnx_tolerance=0.0)
    with pytest.raises(ExportError, match=r"does not reproduce the torch model: max abs error .* min cosine"):
        export_bundle(settings)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("changes", "message"), [
    ({"opset": 17}, "opset 17 is not supported"),
    ({"random_init": False}, "exactly one of --weights PATH and --random-init"),
    ({"resolution": 208}, "out of range"),
    ({"precision": "int8"}, "precision 'int8'"),
    ({"max_batch": 0}, "max batch 0"),
])
def test_settings_are_validated_before_any_work(tmp_path, changes, message):
    settings = ExportSettings(model=TINY, resolution=224, out_dir=tmp_path / "b", random_init=True, trt=False)
    with pytest.raises(SettingsError, match=message):
        export_bundle(dataclasses.replace(settings, **changes))
    assert not (tmp_path / "b").exists()
