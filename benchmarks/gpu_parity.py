"""Acceptance phase `parity`: the torch-cuda backend's features and masks against the CPU backend's.

On the ViT-S/16 768 bundle of the export phase, drawn scenes (one reference, four targets):
features of every precision against ONNX Runtime on the CPU, and the masks each gives with the
same cached reference. TOLERANCES are the pass marks. Then CUDA graphs (batch 4, captured when the
backend loads) against the eager forward. torch.compile is its own phase (`compile_phase`), last.
"""

from __future__ import annotations

import numpy as np

from insid3.benchmarks.gpu_report import PhaseContext, wait_for_bundle
from insid3.benchmarks.writer import table, table_row
from insid3.kernels import to_numpy

# Per precision: the lowest per-patch cosine and (fp32) largest abs difference of the features
# against the CPU backend's, and the lowest mean IoU of the masks. fp32 differs by summation
# order only; bf16 keeps 8 significant bits in the matrix products, fp16 11.
TOLERANCES = {
    "fp32": {"min_cosine": 0.99999, "max_abs": 1e-4, "mask_iou": 0.999},
    "bf16": {"min_cosine": 0.999, "max_abs": None, "mask_iou": 0.98},
    "fp16": {"min_cosine": 0.9999, "max_abs": None, "mask_iou": 0.99},
}
TARGETS = 4
GRAPH_BATCH = 4
PARITY_NEEDS_S = 25.0  # after its bundle: the CPU side's features and masks, three precisions, one graph
COMPILE_NEEDS_S = 35.0  # inductor's first compile of a ViT-S on 16 cores, with its bundle loaded
SIMULATED_PRECISIONS = ("fp32",)  # the CPU torch backend runs fp32 only


def feature_agreement(features: np.ndarray, reference: np.ndarray) -> dict:
    """(B, N, C) against (B, N, C), both L2-normalised per patch: cosines and abs differences."""
    cosine = (features.astype(np.float64) * reference.astype(np.float64)).sum(-1)
    return {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "max_abs": float(np.abs(features - reference).max())}


def within(precision: str, agreement: dict, mask_iou: float) -> bool:
    marks = TOLERANCES[precision]
    return (agreement["min_cosine"] >= marks["min_cosine"] and mask_iou >= marks["mask_iou"]
            and (marks["max_abs"] is None or agreement["max_abs"] <= marks["max_abs"]))


def _segmenter(bundle, backend: str, **options):
    from insid3.engine.runtime.backends import load_backend
    from insid3.engine.runtime.backends.base import BackendOptions
    from insid3.engine.runtime.segmenter import Segmenter

    return Segmenter(bundle, load_backend(bundle, backend, BackendOptions(**options)), bundle.metadata.defaults)


def _run(segmenter, inputs, prepared) -> tuple[np.ndarray, list[np.ndarray]]:
    features = to_numpy(segmenter.encode(prepared))
    reference = segmenter.encode_reference(inputs.shots)
    return features, [segmenter.segment(target, reference=reference) for target in inputs.targets]


def _fp32_means_fp32() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def parity_phase(ctx: PhaseContext) -> None:
    from insid3.benchmarks.inputs import scene_inputs
    from insid3.benchmarks.stats import mean_iou
    from insid3.engine.runtime.segmenter import Segmenter
    from insid3.format.bundle import load_bundle

    folder, why = wait_for_bundle(ctx, "small-768", reserve_s=PARITY_NEEDS_S)
    if folder is None:
        ctx.write("skipped", why, {})
        return
    _fp32_means_fp32()
    bundle, inputs = load_bundle(folder), scene_inputs(shots=1, targets=TARGETS)
    cpu = Segmenter.from_bundle(folder, "onnxruntime")
    prepared = [cpu.prepare(target) for target in inputs.targets]
    cpu_features, cpu_masks = _run(cpu, inputs, prepared)
    details: dict = {"bundle": f"{ctx.bundles['small-768']} random-init", "cpu_backend": "onnxruntime (CPU)",
                     "backend": ctx.torch_backend, "tolerances": TOLERANCES}
    lines = table(("precision", "min cosine", "mean cosine", "max abs", "mask mean IoU", "identical masks", "within"),
                  ())
    ok = True
    eager_bf16 = None
    precisions = SIMULATED_PRECISIONS if ctx.simulate else tuple(TOLERANCES)
    for precision in precisions:
        features, masks = _run(_segmenter(bundle, ctx.torch_backend, precision=precision), inputs, prepared)
        eager_bf16 = features if precision == "bf16" else eager_bf16
        agreement = feature_agreement(features, cpu_features)
        iou = mean_iou(masks, cpu_masks)
        identical = sum(bool(np.array_equal(a, b)) for a, b in zip(masks, cpu_masks))
        passed = within(precision, agreement, iou)
        ok &= passed
        details[precision] = {**agreement, "mask_mean_iou": iou, "identical_masks": identical, "within": passed}
        lines.append(table_row((precision, f"{agreement['min_cosine']:.6f}", f"{agreement['mean_cosine']:.6f}",
                                f"{agreement['max_abs']:.2e}", f"{iou:.4f}", f"{identical}/{TARGETS}",
                                "yes" if passed else "NO")))
        ctx.write("passed" if ok else "failed", f"{precision} done", details, lines)
    if ctx.simulate:
        lines.append("\nCUDA graphs: not in a simulated run")
    else:
        graphs = _segmenter(bundle, ctx.torch_backend, precision="bf16", cuda_graph_batch_sizes=(GRAPH_BATCH,))
        graph_features = to_numpy(graphs.encode(prepared))  # captured at load: replayed on this call
        details["cuda_graphs_max_abs_vs_eager"] = float(np.abs(graph_features - eager_bf16).max())
        lines.append(f"\nCUDA graph (bf16, batch {GRAPH_BATCH}, replayed) vs eager: max abs "
                     f"{details['cuda_graphs_max_abs_vs_eager']:.2e}")
    summary = ", ".join(f"{p}: min cos {details[p]['min_cosine']:.5f}, IoU {details[p]['mask_mean_iou']:.3f}"
                        for p in precisions)
    ctx.write("passed" if ok else "failed", summary, details, lines)


def compile_phase(ctx: PhaseContext) -> None:
    """torch.compile (inductor) on torch-cuda, bf16: its first call's seconds and its features
    against the eager forward's. Its own phase, last: the slowest and least used option."""
    import time

    from insid3.benchmarks.inputs import scene_inputs
    from insid3.format.bundle import load_bundle

    if ctx.simulate:
        ctx.write("skipped", "a simulated run does not compile (inductor on the CPU measures nothing here)", {})
        return
    folder, why = wait_for_bundle(ctx, "small-768", reserve_s=COMPILE_NEEDS_S)
    if folder is None:
        ctx.write("skipped", why, {})
        return
    bundle, inputs = load_bundle(folder), scene_inputs(shots=1, targets=TARGETS)
    eager = _segmenter(bundle, ctx.torch_backend, precision="bf16")
    prepared = [eager.prepare(target) for target in inputs.targets]
    eager_features = to_numpy(eager.encode(prepared))
    started = time.perf_counter()
    compiled = _segmenter(bundle, ctx.torch_backend, precision="bf16", torch_compile=True)
    compiled_features = to_numpy(compiled.encode(prepared))
    seconds = round(time.perf_counter() - started, 1)
    max_abs = float(np.abs(compiled_features - eager_features).max())
    agreement = feature_agreement(compiled_features, eager_features)
    passed = agreement["min_cosine"] >= TOLERANCES["bf16"]["min_cosine"]
    details = {"first_call_s": seconds, "max_abs_vs_eager": max_abs, **agreement}
    ctx.write("passed" if passed else "failed",
              f"first call {seconds} s, max abs vs eager {max_abs:.2e}, min cosine {agreement['min_cosine']:.6f}",
              details, [f"torch.compile (bf16): first call {seconds} s, max abs vs eager {max_abs:.2e}"])
