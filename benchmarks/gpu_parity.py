"""Acceptance phase `parity`: the torch-cuda backend's features and masks against the CPU backend's.

On the ViT-S/16 768 bundle of the export phase, drawn scenes (one reference, four targets):
features of every precision against ONNX Runtime on the CPU, and the masks each gives with the
same cached reference. TOLERANCES are the pass marks. Then CUDA graphs (batch 4) against the
eager forward, and, when time is left, torch.compile's first call and its features.
"""

from __future__ import annotations

import time

import numpy as np

from insid3.benchmarks.gpu_report import PhaseContext, wait_for_bundle
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
COMPILE_NEEDS_S = 90.0  # inductor's first compile of a ViT-S takes about a minute; skipped below this


def feature_agreement(features: np.ndarray, reference: np.ndarray) -> dict:
    """(B, N, C) against (B, N, C), both L2-normalised per patch: cosines and abs differences."""
    cosine = (features.astype(np.float64) * reference.astype(np.float64)).sum(-1)
    return {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "max_abs": float(np.abs(features - reference).max())}


def within(precision: str, agreement: dict, mask_iou: float) -> bool:
    marks = TOLERANCES[precision]
    return (agreement["min_cosine"] >= marks["min_cosine"] and mask_iou >= marks["mask_iou"]
            and (marks["max_abs"] is None or agreement["max_abs"] <= marks["max_abs"]))


def _torch_segmenter(bundle, **options):
    from insid3.engine.runtime.backends import load_backend
    from insid3.engine.runtime.backends.base import BackendOptions
    from insid3.engine.runtime.segmenter import Segmenter

    return Segmenter(bundle, load_backend(bundle, "torch-cuda", BackendOptions(**options)), bundle.metadata.defaults)


def _run(segmenter, inputs, prepared) -> tuple[np.ndarray, list[np.ndarray]]:
    features = to_numpy(segmenter.encode(prepared))
    reference = segmenter.encode_reference(inputs.shots)
    return features, [segmenter.segment(target, reference=reference) for target in inputs.targets]


def parity_phase(ctx: PhaseContext) -> None:
    import torch

    from insid3.benchmarks.inputs import scene_inputs
    from insid3.benchmarks.stats import mean_iou
    from insid3.engine.runtime.segmenter import Segmenter
    from insid3.format.bundle import load_bundle

    folder = wait_for_bundle(ctx, "small-768", reserve_s=45)
    if folder is None:
        ctx.write("skipped", "the ViT-S 768 bundle was not exported in time", {})
        return
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32
    bundle, inputs = load_bundle(folder), scene_inputs(shots=1, targets=TARGETS)
    cpu = Segmenter.from_bundle(folder, "onnxruntime")
    prepared = [cpu.prepare(target) for target in inputs.targets]
    cpu_features, cpu_masks = _run(cpu, inputs, prepared)
    details: dict = {"bundle": "ViT-S/16 768 random-init", "cpu_backend": "onnxruntime (CPU)", "tolerances": TOLERANCES}
    lines = ["| precision | min cosine | mean cosine | max abs | mask mean IoU | identical masks | within |",
             "|---|---|---|---|---|---|---|"]
    ok = True
    eager_bf16 = None
    for precision in TOLERANCES:
        features, masks = _run(_torch_segmenter(bundle, precision=precision), inputs, prepared)
        eager_bf16 = features if precision == "bf16" else eager_bf16
        agreement = feature_agreement(features, cpu_features)
        iou = mean_iou(masks, cpu_masks)
        identical = sum(bool(np.array_equal(a, b)) for a, b in zip(masks, cpu_masks))
        passed = within(precision, agreement, iou)
        ok &= passed
        details[precision] = {**agreement, "mask_mean_iou": iou, "identical_masks": identical, "within": passed}
        lines.append(f"| {precision} | {agreement['min_cosine']:.6f} | {agreement['mean_cosine']:.6f} | "
                     f"{agreement['max_abs']:.2e} | {iou:.4f} | {identical}/{TARGETS} | {'yes' if passed else 'NO'} |")
        ctx.write("passed" if ok else "failed", f"{precision} done", details, lines)
    graphs = _torch_segmenter(bundle, precision="bf16", cuda_graph_batch_sizes=(GRAPH_BATCH,))
    graphs.encode(prepared)  # batch GRAPH_BATCH: captured on this call
    graph_features = to_numpy(graphs.encode(prepared))  # and replayed on this one
    details["cuda_graphs_max_abs_vs_eager"] = float(np.abs(graph_features - eager_bf16).max())
    lines.append(f"\nCUDA graph (bf16, batch {GRAPH_BATCH}, replayed) vs eager: max abs "
                 f"{details['cuda_graphs_max_abs_vs_eager']:.2e}")
    if ctx.left() > COMPILE_NEEDS_S:
        started = time.perf_counter()
        compiled = _torch_segmenter(bundle, precision="bf16", torch_compile=True)
        compiled_features = to_numpy(compiled.encode(prepared))
        details["compile_first_call_s"] = round(time.perf_counter() - started, 1)
        details["compile_max_abs_vs_eager"] = float(np.abs(compiled_features - eager_bf16).max())
        lines.append(f"torch.compile (bf16): first call {details['compile_first_call_s']} s, max abs vs eager "
                     f"{details['compile_max_abs_vs_eager']:.2e}")
    else:
        lines.append(f"torch.compile: skipped ({ctx.left():.0f} s left, it needs {COMPILE_NEEDS_S:.0f})")
    summary = ", ".join(f"{p}: min cos {details[p]['min_cosine']:.5f}, IoU {details[p]['mask_mean_iou']:.3f}"
                        for p in TOLERANCES)
    ctx.write("passed" if ok else "failed", summary, details, lines)
