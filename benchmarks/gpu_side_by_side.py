"""Acceptance phase `side_by_side`: ours against the authors' way on one GPU, in one process.

For ViT-S/16 at 768 and ViT-L/16 at 1024 (random-init bundles of the export phase), in two
settings: fp32 (TF32 off everywhere) and the authors' newer one, bf16 autocast with TF32 on (ours:
the torch-cuda backend in bf16, TF32 on for the rest). Per side:
- ours: the Segmenter on torch-cuda with the reference encoded once; batch 1 (per-target stage
  times from CUDA events, FPS from the synchronised wall clock) and batch 8 (segment_batch FPS);
- the authors' way: insid3.authors_way.segment, reference and target re-encoded together for
  every target, sklearn on the CPU, the same stage names and CUDA events;
- peak device memory: torch's allocator high-water (reset before each side) plus, for ours,
  the growth of CuPy's memory pool (the kernels' arrays).
The masks of the two sides are compared (mean IoU). Each configuration is written as it ends.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import cycle, islice

from insid3.benchmarks.gpu_report import BUNDLES, PhaseContext, wait_for_bundle
from insid3.engine.runtime.timing import STAGES, StageClock

SETTINGS = {"fp32": {"precision": "fp32", "tf32": False}, "bf16+tf32": {"precision": "bf16", "tf32": True}}
TARGETS = 4
PASSES = 2  # measured passes over the targets per side, after one warm-up target
BATCH = 8
MIB = 1024 * 1024
NEEDS_S = {"small-768": 30.0, "large-1024": 60.0}  # time left below which a configuration is skipped


class EventClock(StageClock):
    """StageClock's interface, timed by CUDA events on the current stream (CuPy's and torch's
    default stream alike): the device's time between stage boundaries, read once at `settle`."""

    def __init__(self) -> None:
        super().__init__()
        import torch

        self._torch, self._events = torch, []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = self._torch.cuda.Event(enable_timing=True)
        start.record()
        try:
            yield
        finally:
            end = self._torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((name, start, end))

    def settle(self) -> dict[str, float]:
        self._torch.cuda.synchronize()
        for name, start, end in self._events:
            self.ms[name] = self.ms.get(name, 0.0) + start.elapsed_time(end)
        self._events.clear()
        return self.ms


def set_tf32(enabled: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled


def _timed_passes(segment_one, targets) -> tuple[list, dict, float]:
    """(masks of the last pass, median stage ms per target, FPS): PASSES passes over `targets`."""
    import torch

    segment_one(targets[0])  # warm-up
    stage_samples, pass_seconds, masks = [], [], []
    for _ in range(PASSES):
        torch.cuda.synchronize()
        begin, masks = time.perf_counter(), []
        for target in targets:
            clock = EventClock()
            masks.append(segment_one(target, clock))
            stage_samples.append(clock.settle())
        pass_seconds.append(time.perf_counter() - begin)
    stages = {s: statistics.median(sample.get(s, 0.0) for sample in stage_samples) for s in STAGES}
    return masks, stages, len(targets) / statistics.median(pass_seconds)


def measure_ours(bundle, precision: str, inputs) -> dict:
    import cupy
    import torch

    from insid3.engine.runtime.backends import load_backend
    from insid3.engine.runtime.backends.base import BackendOptions
    from insid3.engine.runtime.segmenter import Segmenter

    pool = cupy.get_default_memory_pool()
    segmenter = Segmenter(bundle, load_backend(bundle, "torch-cuda", BackendOptions(precision=precision)),
                          bundle.metadata.defaults)
    reference = segmenter.encode_reference(inputs.shots)  # once: the cached reference
    pool_base = pool.total_bytes()
    torch.cuda.reset_peak_memory_stats()

    def segment_one(target, clock=None):
        clock = clock or StageClock(segmenter.backend.synchronize)
        with clock.stage("preprocess"):
            prepared = segmenter.prepare(target)
        with clock.stage("backbone"):
            features = segmenter.encode([prepared])
        return segmenter.decode(features[0], prepared.original_size, reference, clock)

    masks, stages, fps = _timed_passes(segment_one, inputs.targets)
    batch_targets = list(islice(cycle(inputs.targets), 2 * BATCH))
    segmenter.segment_batch(batch_targets, BATCH, reference=reference)  # warm-up at this batch size
    torch.cuda.synchronize()
    begin = time.perf_counter()
    segmenter.segment_batch(batch_targets, BATCH, reference=reference)
    segmenter.backend.synchronize()
    batch_fps = len(batch_targets) / (time.perf_counter() - begin)
    peak = (torch.cuda.max_memory_allocated() + pool.total_bytes() - pool_base) / MIB
    return {"masks": masks, "stages_ms": stages, "fps_batch_1": fps, f"fps_batch_{BATCH}": batch_fps,
            "peak_device_mib": peak, "backend": segmenter.describe()}


def autocast_backbone(backbone):
    """The backbone under torch.autocast(bf16), features handed back in fp32."""
    import torch

    class AutocastBackbone(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = backbone

        def forward(self, pixels):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.inner(pixels).float()

    return AutocastBackbone()


def measure_authors(model, inputs) -> dict:
    import torch

    from insid3 import authors_way

    torch.cuda.reset_peak_memory_stats()
    masks, stages, fps = _timed_passes(
        lambda target, clock=None: authors_way.segment(model, inputs.shots, target, clock), inputs.targets
    )
    return {"masks": masks, "stages_ms": stages, "fps_batch_1": fps,
            "peak_device_mib": torch.cuda.max_memory_allocated() / MIB}


def _row(config: str, setting: str, side: str, result: dict) -> str:
    stages = " | ".join(f"{result['stages_ms'][s]:.1f}" for s in STAGES)
    batch = result.get(f"fps_batch_{BATCH}")
    return (f"| {config} | {setting} | {side} | {result['fps_batch_1']:.2f} | "
            f"{'' if batch is None else f'{batch:.2f}'} | {stages} | {result['peak_device_mib']:.0f} |")


def side_by_side_phase(ctx: PhaseContext) -> None:
    import cupy
    import torch

    from insid3 import authors_way
    from insid3.benchmarks.inputs import scene_inputs
    from insid3.benchmarks.stats import mean_iou
    from insid3.format.bundle import load_bundle

    inputs = scene_inputs(shots=1, targets=TARGETS)
    details: dict = {"targets": TARGETS, "passes": PASSES, "batch": BATCH, "settings": SETTINGS,
                     "device": torch.cuda.get_device_name(), "inputs": inputs.source}
    lines = [f"Medians over {PASSES} passes of {TARGETS} targets, one cached reference (ours) or re-encoded with "
             f"every target (authors' way); stage ms from CUDA events.", "",
             f"| bundle | setting | side | FPS batch 1 | FPS batch {BATCH} | {' | '.join(STAGES)} | peak MiB |",
             "|---|---|---|---|---|" + "---|" * len(STAGES) + "---|"]
    done = []
    for key in BUNDLES:
        folder = wait_for_bundle(ctx, key, reserve_s=NEEDS_S[key])
        if folder is None:
            details[key] = "skipped: its bundle was not exported in time"
            lines.append(f"| {key} | skipped: bundle not exported in time |")
            continue
        bundle = load_bundle(folder)
        authors_fp32 = authors_way.load_model(folder, "cuda")
        for setting, choice in SETTINGS.items():
            if ctx.left() < NEEDS_S[key]:
                details[f"{key} {setting}"] = f"skipped: {ctx.left():.0f} s left"
                continue
            set_tf32(choice["tf32"])
            ours = measure_ours(bundle, choice["precision"], inputs)
            model = authors_fp32 if not choice["tf32"] else replace(
                authors_fp32, backbone=autocast_backbone(authors_fp32.backbone))
            authors = measure_authors(model, inputs)
            iou = mean_iou(ours.pop("masks"), authors.pop("masks"))
            speedup = ours["fps_batch_1"] / authors["fps_batch_1"]
            details[f"{key} {setting}"] = {"ours": ours, "authors": authors, "mask_mean_iou": iou,
                                          "speedup_batch_1": speedup}
            lines += [_row(key, setting, "ours", ours), _row(key, setting, "authors' way", authors)]
            done.append(f"{key} {setting}: {speedup:.1f}x at batch 1, IoU {iou:.3f}")
            torch.cuda.empty_cache()
            cupy.get_default_memory_pool().free_all_blocks()
            ctx.write("passed", "; ".join(done), details, lines)
    status = "passed" if len(done) == len(BUNDLES) * len(SETTINGS) else "failed"
    ctx.write(status, "; ".join(done) or "nothing measured", details, lines)
