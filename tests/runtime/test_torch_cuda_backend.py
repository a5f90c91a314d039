"""The torch-cuda backend: its precision logic on the CPU (the same module code the GPU runs), its
availability answers here, and (marked gpu) its features and zero-copy hand-off on a device."""

import copy
import importlib.util
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.export_fixtures import TINY
from torch.overrides import TorchFunctionMode

from insid3.engine.runtime import backends
from insid3.engine.runtime.backends import torch_cuda_backend
from insid3.engine.runtime.backends.base import BackendOptions
from insid3.errors import BackendUnavailableError
from insid3.export.backbone import random_backbone
from insid3.export.config import SIZES
from insid3.export.torch_precision import (
    ReducedPrecision,
    forward_function,
    fused_attention_backends,
    precision_mode,
    prepare_model,
)
from insid3.format.bundle import load_bundle
from insid3.gpu_stack import StackMismatch

# Cosine of each patch's bf16 / fp16 feature with its fp32 one, at least (ViT-S, 12 blocks, random
# weights; measured 0.999994 and 0.9999997): bf16 keeps 8 significant bits, fp16 11.
MIN_COSINE = {"bf16": 0.9995, "fp16": 0.99995}


def _model(config=TINY, resolution=224):
    return random_backbone(config, seed=0, resolution=resolution).model


def _pixels(batch=2, resolution=224):
    return torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def small_model():
    return _model(SIZES["small"])


@pytest.fixture(scope="module")
def small_fp32_features(small_model):
    with torch.no_grad():
        return small_model(_pixels())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_features_are_close_to_fp32(small_model, small_fp32_features, precision):
    forward = forward_function(prepare_model(copy.deepcopy(small_model), precision), precision)
    with torch.no_grad():
        features = forward(_pixels())
    assert features.dtype == torch.float32 and features.shape == small_fp32_features.shape
    cosine = (features * small_fp32_features).sum(-1)
    assert cosine.min().item() >= MIN_COSINE[precision]
    assert not torch.equal(features, small_fp32_features)  # the products really ran in 16 bits


def test_fp32_is_the_model_unchanged():
    model = _model()
    with torch.no_grad():
        expected = model(_pixels())
        actual = forward_function(prepare_model(model, "fp32"), "fp32")(_pixels())
    assert torch.equal(actual, expected)
    assert all(p.dtype == torch.float32 for p in model.parameters())


class _Recorder(TorchFunctionMode):
    """Entered outside ReducedPrecision: sees the calls it makes, with the dtypes it makes them in."""

    def __init__(self):
        super().__init__()
        self.seen: dict[str, set[torch.dtype]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()}
        self.seen.setdefault(name, set()).update(dtypes)
        return func(*args, **(kwargs or {}))


def test_matrix_products_run_in_16_bits_and_norms_softmax_and_residuals_in_fp32():
    model = prepare_model(_model(), "bf16")
    recorder = _Recorder()
    with torch.no_grad(), recorder, ReducedPrecision(torch.bfloat16):
        features = model(_pixels())
    seen = recorder.seen
    assert seen["linear"] == {torch.bfloat16} and seen["conv2d"] == {torch.bfloat16}
    assert seen["scaled_dot_product_attention"] == {torch.bfloat16}
    assert seen["layer_norm"] == {torch.float32} and seen["normalize"] == {torch.float32}
    assert seen["add"] == {torch.float32} and seen["gelu"] == {torch.float32}  # residual stream, MLP activation
    assert features.dtype == torch.float32
    linear_and_conv = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert all(p.dtype == torch.bfloat16 for m in linear_and_conv for p in m.parameters())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(p.dtype == torch.float32 for m in norms for p in m.parameters())


def test_the_mode_leaves_other_ops_alone():
    x = torch.randn(4, 8)
    with ReducedPrecision(torch.float16):
        assert F.softmax(x, -1).dtype == torch.float32 and (x @ x.T).dtype == torch.float32
        assert F.linear(x, torch.randn(3, 8)).dtype == torch.float32  # computed in fp16, handed back fp32


def test_fused_attention_kernels_and_compile_give_the_eager_features():
    model = prepare_model(_model(), "bf16")
    eager = forward_function(model, "bf16")
    fused = forward_function(model, "bf16", attention_backends=fused_attention_backends())
    compiled = forward_function(model, "bf16", compile_backend="aot_eager")
    with torch.no_grad():
        expected = eager(_pixels())
        torch.testing.assert_close(fused(_pixels()), expected, atol=1e-3, rtol=0)
        torch.testing.assert_close(compiled(_pixels()), expected, atol=1e-5, rtol=0)


def test_unknown_precisions_are_refused():
    with pytest.raises(ValueError, match="precision 'int8' is not one of fp32, bf16, fp16"):
        precision_mode("int8")


def test_a_cuda_graph_wrapper_passes_other_batch_sizes_straight_through():
    graphs = torch_cuda_backend.CudaGraphForward(lambda pixels: pixels * 2, (8,))
    assert torch.equal(graphs(torch.ones(2, 3)), torch.full((2, 3), 2.0))


# ---------------------------------------------------------------- availability (two of them assume no GPU)
@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
class _FakeGraphs:
    """torch.cuda's stream and graph calls, recorded: which thread captured, in which error mode."""

    def __init__(self, monkeypatch):
        import contextlib
        import threading

        self.captures, self.replays = [], 0
        fake = self

        class Graph:
            def replay(self):
                fake.replays += 1

        @contextlib.contextmanager
        def graph(cuda_graph, capture_error_mode="global"):
            fake.captures.append((threading.current_thread().name, capture_error_mode))
            yield

        stream = types.SimpleNamespace(wait_stream=lambda other: None)
        monkeypatch.setattr(torch.cuda, "Stream", lambda: stream)
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: stream)
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)


def test_cuda_graphs_are_captured_up_front_in_thread_local_mode(monkeypatch):
    """Captured when the backend loads, for every size, never on a worker thread's first batch
    (torch's default "global" mode errors on other threads' CUDA calls during a capture)."""
    import threading

    fake = _FakeGraphs(monkeypatch)
    graphs = torch_cuda_backend.CudaGraphForward(lambda pixels: pixels * 2, (4, 2, 4))
    graphs.capture((3, 2, 2), "cpu")
    assert graphs.captured == (2, 4)
    assert fake.captures == [(threading.current_thread().name, "thread_local")] * 2
    worker = threading.Thread(target=lambda: graphs(torch.ones(4, 3, 2, 2)), name="insid3-backbone")
    worker.start()
    worker.join()
    assert fake.replays == 1 and len(fake.captures) == 2  # replayed on the worker, nothing captured there
    assert torch.equal(graphs(torch.ones(3, 3, 2, 2)), torch.full((3, 3, 2, 2), 2.0))  # not captured: direct


def test_without_cupy_it_says_which_extra_to_install(tiny_bundle):
    reason = torch_cuda_backend.unavailable_reason(load_bundle(tiny_bundle), BackendOptions())
    assert reason == "cupy is not installed (pip install 'insid3[gpu-cu12]' or 'insid3[gpu-cu13]', by the driver's CUDA)"
    with pytest.raises(BackendUnavailableError, match=r"^backend 'torch-cuda' cannot run here: cupy is not installed"):
        backends.load_backend(load_bundle(tiny_bundle), "torch-cuda")


@pytest.fixture
def cupy_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "cupy" else real(name, *a))


def test_a_blocking_wheel_mismatch_is_the_reason(tiny_bundle, cupy_installed, monkeypatch):
    line = "the CUDA driver supports CUDA 12.4 but cupy-cuda13x 14.2.0 is built for CUDA 13: ..."
    monkeypatch.setattr(torch_cuda_backend, "stack_mismatch", lambda: StackMismatch(line, blocking=True))
    assert torch_cuda_backend.unavailable_reason(load_bundle(tiny_bundle), BackendOptions()) == line


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a CUDA device here")
def test_no_device_is_named_with_the_mismatch_that_may_explain_it(tiny_bundle, cupy_installed, monkeypatch):
    bundle = load_bundle(tiny_bundle)
    monkeypatch.setattr(torch_cuda_backend, "stack_mismatch", lambda: None)
    assert torch_cuda_backend.unavailable_reason(bundle, BackendOptions()) == (
        f"torch {torch.__version__} sees no CUDA device"
    )
    monkeypatch.setattr(torch_cuda_backend, "stack_mismatch", lambda: StackMismatch("older wheels", blocking=False))
    assert torch_cuda_backend.unavailable_reason(bundle, BackendOptions()) == (
        f"torch {torch.__version__} sees no CUDA device (older wheels)"
    )


@pytest.mark.parametrize(("options", "reason"), [
    (BackendOptions(precision="int8"), "the torch-cuda backend runs fp32, bf16, fp16, not int8"),
    (BackendOptions(cuda_graph_batch_sizes=(1, 0)), "CUDA graph batch sizes must be >= 1, got (1, 0)"),
])
def test_bad_options_are_refused_before_any_device_work(tiny_bundle, cupy_installed, options, reason):
    assert torch_cuda_backend.unavailable_reason(load_bundle(tiny_bundle), options) == reason


# ---------------------------------------------------------------- on a device (pytest -m gpu)
@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "graphs"), [("fp32", ()), ("bf16", ()), ("bf16", (2,)), ("fp16", ())])
def test_device_features_match_the_cpu_model_and_stay_on_the_device(tiny_bundle, precision, graphs):
    bundle = load_bundle(tiny_bundle)
    options = BackendOptions(precision=precision, cuda_graph_batch_sizes=graphs)
    reason = torch_cuda_backend.unavailable_reason(bundle, options)
    if reason is not None:
        pytest.skip(reason)
    import cupy

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    backend = backends.load_backend(bundle, "torch-cuda", options)
    pixels = _pixels().numpy()
    pool_before, torch_before = cupy.get_default_memory_pool().used_bytes(), torch.cuda.memory_allocated()
    features = backend.features(pixels)
    backend.features(pixels)  # a graph's second call replays it
    assert isinstance(features, cupy.ndarray) and features.dtype == np.float32
    assert cupy.get_default_memory_pool().used_bytes() == pool_before  # not copied into CuPy's pool
    assert torch.cuda.memory_allocated() - torch_before >= features.nbytes  # torch's memory, shared
    with torch.no_grad():
        expected = _model()(torch.from_numpy(pixels)).numpy()
    cosine = (cupy.asnumpy(features) * expected).sum(-1)
    assert cosine.min() >= (0.99999 if precision == "fp32" else MIN_COSINE[precision])


@pytest.mark.gpu
def test_a_worker_thread_gets_features_on_the_backends_device_and_close_lets_go(tiny_bundle):
    """segment_stream encodes on a worker thread, whose current device (per thread in CuPy and
    torch) starts at 0: the backend makes its own current around every call; graphs were captured
    at load, so the worker only replays; close() frees what the backend held."""
    from concurrent.futures import ThreadPoolExecutor

    bundle = load_bundle(tiny_bundle)
    options = BackendOptions(precision="bf16", cuda_graph_batch_sizes=(2,))
    reason = torch_cuda_backend.unavailable_reason(bundle, options)
    if reason is not None:
        pytest.skip(reason)
    pixels = _pixels().numpy()
    with backends.load_backend(bundle, "torch-cuda", options) as backend:
        with ThreadPoolExecutor(max_workers=1) as pool:
            features = pool.submit(backend.features, pixels).result()
        assert features.device.id == options.device_id and features.shape[0] == 2
        eager = backend.features(pixels[:1])  # batch 1: no graph, the eager forward
        cosine = (features[:1] * eager).sum(-1)
        assert float(cosine.min()) >= MIN_COSINE["bf16"]
    assert backend.closed
    with pytest.raises(RuntimeError, match="closed"):
        backend.features(pixels)
