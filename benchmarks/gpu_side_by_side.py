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
The two sides (OursOnDevice, AuthorsOnDevice) go through the side-by-side harness
(benchmarks/harness.py), one after the other (each side's device high-water is its own). The masks
of the two sides are compared (mean IoU). Each configuration (bundle x setting) ends
"passed", "failed" (an error, or masks that disagree beyond MIN_MASK_IOU) or "skipped" (its bundle
did not come, or too little time was left: a slow box is not a wrong one), written as it ends.
The phase fails only when a configuration failed. With PhaseContext.simulate the same logic runs
on the CPU: tiny bundles, the CPU torch backend, wall-clock stage times, no device memory.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import cycle, islice

from insid3.benchmarks.gpu_report import PhaseContext, wait_for_bundle
from insid3.benchmarks.harness import Entrant, InProcess, run_side_by_side
from insid3.benchmarks.passes import MeasuredSide
from insid3.benchmarks.writer import table, table_row
from insid3.engine.runtime.timing import STAGES, StageClock

SETTINGS = {"fp32": {"precision": "fp32", "tf32": False}, "bf16+tf32": {"precision": "bf16", "tf32": True}}
SIMULATED_SETTINGS = ("fp32",)  # the CPU torch backend runs fp32 only
# Per bundle: (targets, measured passes over them after one warm-up target). The authors' way
# clusters on the CPU, seconds per ViT-L 1024 target: fewer of those.
SAMPLES = {"small-768": (4, 2), "large-1024": (2, 1)}
SIMULATED_SAMPLES = (1, 1)
BATCH = 8
SIMULATED_BATCH = 2
MIB = 1024 * 1024
NEEDS_S = {"small-768": 25.0, "large-1024": 45.0}  # time left below which a configuration is skipped
MIN_MASK_IOU = {"fp32": 0.98, "bf16+tf32": 0.9}  # ours against the authors' way on the same features


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


class Meter:
    """The device side of a measurement: CUDA events, synchronisation and peak memory on a GPU;
    the wall clock and nothing to synchronise or count in a simulated run."""

    def __init__(self, simulate: bool) -> None:
        self.simulate = simulate

    def clock(self) -> StageClock:
        return StageClock() if self.simulate else EventClock()

    def settle(self, clock: StageClock) -> dict[str, float]:
        return clock.ms if self.simulate else clock.settle()

    def synchronize(self) -> None:
        if not self.simulate:
            import torch

            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if not self.simulate:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self) -> int:
        """torch's allocator high-water since `reset_peak` (0 in a simulated run)."""
        if self.simulate:
            return 0
        import torch

        return torch.cuda.max_memory_allocated()

    def pool_bytes(self) -> int:
        """What CuPy's memory pool holds (0 in a simulated run)."""
        if self.simulate:
            return 0
        import cupy

        return cupy.get_default_memory_pool().total_bytes()

    def release(self) -> None:
        if not self.simulate:
            import cupy
            import torch

            torch.cuda.empty_cache()
            cupy.get_default_memory_pool().free_all_blocks()


class DeviceSide(MeasuredSide):
    """What both sides of the phase share: one warm-up target, then passes of per-target calls,
    each timed by the meter's clock; `stages_ms()` is the median per stage over every measured target."""

    def __init__(self, inputs, meter: Meter) -> None:
        super().__init__(inputs.targets, warmup=1)
        self.inputs, self.meter, self.synchronize = inputs, meter, meter.synchronize

    def segment_with(self, target, clock: StageClock):
        raise NotImplementedError

    def segment_one(self, target):
        clock = self.meter.clock()
        mask = self.segment_with(target, clock)
        return mask, self.meter.settle(clock)

    def stages_ms(self) -> dict[str, float]:
        samples = [stages for record in self.passes for stages in record.stages_ms]
        return {s: statistics.median(sample.get(s, 0.0) for sample in samples) for s in STAGES}


class OursOnDevice(DeviceSide):
    """The Segmenter on the torch backend, the reference encoded once; then segment_batch's FPS."""

    def __init__(self, bundle, backend: str, precision: str, inputs, batch: int, meter: Meter) -> None:
        super().__init__(inputs, meter)
        self.bundle, self.backend, self.precision, self.batch = bundle, backend, precision, batch

    def start(self) -> None:
        from insid3.engine.runtime.backends import load_backend
        from insid3.engine.runtime.backends.base import BackendOptions
        from insid3.engine.runtime.segmenter import Segmenter

        self.segmenter = Segmenter(self.bundle, load_backend(self.bundle, self.backend,
                                                             BackendOptions(precision=self.precision)),
                                   self.bundle.metadata.defaults)
        self.reference = self.segmenter.encode_reference(self.inputs.shots)  # once: the cached reference
        self.pool_base = self.meter.pool_bytes()
        self.meter.reset_peak()

    def segment_with(self, target, clock: StageClock):
        segmenter = self.segmenter
        with clock.stage("preprocess"):
            prepared = segmenter.prepare(target)
        with clock.stage("backbone"):
            features = segmenter.encode([prepared])
        return segmenter.decode(features[0], prepared.original_size, self.reference, clock)

    def finish(self) -> dict:
        batch_targets = list(islice(cycle(self.inputs.targets), 2 * self.batch))
        self.segmenter.segment_batch(batch_targets, self.batch, reference=self.reference)  # warm-up at this size
        self.meter.synchronize()
        begin = time.perf_counter()
        self.segmenter.segment_batch(batch_targets, self.batch, reference=self.reference)
        self.segmenter.backend.synchronize()
        batch_fps = len(batch_targets) / (time.perf_counter() - begin)
        peak = (self.meter.peak_bytes() + self.meter.pool_bytes() - self.pool_base) / MIB
        return {"stages_ms": self.stages_ms(), "fps_batch_n": batch_fps, "batch": self.batch,
                "peak_device_mib": peak, "backend": self.segmenter.describe()}


class AuthorsOnDevice(DeviceSide):
    """insid3.authors_way.segment with the given model: reference and target encoded together."""

    def __init__(self, model, inputs, meter: Meter) -> None:
        super().__init__(inputs, meter)
        self.model = model

    def start(self) -> None:
        from insid3 import authors_way

        self.segment = authors_way.segment
        self.meter.reset_peak()

    def segment_with(self, target, clock: StageClock):
        return self.segment(self.model, self.inputs.shots, target, clock)

    def finish(self) -> dict:
        return {"stages_ms": self.stages_ms(), "peak_device_mib": self.meter.peak_bytes() / MIB}


def measure_both(ours: OursOnDevice, authors: AuthorsOnDevice, passes: int) -> tuple[dict, dict, float]:
    """(ours, the authors' way, mean IoU of their masks) through the side-by-side harness."""
    from insid3.benchmarks.stats import mean_iou

    runs = run_side_by_side([Entrant("ours", lambda: InProcess(ours)),
                             Entrant("authors' way", lambda: InProcess(authors))], passes, interleave=False)
    figures = {name: {**run.result, "fps_batch_1": run.median_fps()} for name, run in runs.items()}
    return figures["ours"], figures["authors' way"], mean_iou(runs["ours"].outputs(), runs["authors' way"].outputs())


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


def _row(config: str, setting: str, side: str, result: dict) -> str:
    batch = result.get("fps_batch_n")
    return table_row([config, setting, side, f"{result['fps_batch_1']:.2f}", "" if batch is None else f"{batch:.2f}",
                      *(f"{result['stages_ms'][s]:.1f}" for s in STAGES), f"{result['peak_device_mib']:.0f}"])


def configuration_verdict(outcomes: dict[str, str]) -> str:
    """The phase's status from its configurations' outcomes ("passed" / "failed" / "skipped"):
    failed when one failed; passed when one passed and none failed; else skipped."""
    values = set(outcomes.values())
    if "failed" in values:
        return "failed"
    return "passed" if "passed" in values else "skipped"


def _verdict_line(outcomes: dict[str, str], done: list[str]) -> str:
    counts = {o: sum(v == o for v in outcomes.values()) for o in ("passed", "failed", "skipped")}
    return f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped" + (
        f": {'; '.join(done)}" if done else "")


def side_by_side_phase(ctx: PhaseContext) -> None:
    from insid3 import authors_way
    from insid3.benchmarks.inputs import scene_inputs
    from insid3.format.bundle import load_bundle

    meter = Meter(ctx.simulate)
    settings = {k: SETTINGS[k] for k in (SIMULATED_SETTINGS if ctx.simulate else SETTINGS)}
    batch = SIMULATED_BATCH if ctx.simulate else BATCH
    samples = {key: SIMULATED_SAMPLES if ctx.simulate else SAMPLES[key] for key in ctx.bundles}
    details: dict = {"samples": samples, "batch": batch, "settings": settings, "configurations": {},
                     "device": "cpu (simulated run)" if ctx.simulate else _device_name()}
    lines = ["Medians over the passes (targets x passes per bundle: "
             + ", ".join(f"{k} {t}x{p}" for k, (t, p) in samples.items())
             + "), one cached reference (ours) or re-encoded with every target (authors' way); stage ms from "
             + ("the wall clock (simulated run)." if ctx.simulate else "CUDA events."), "",
             *table(["bundle", "setting", "side", "FPS batch 1", f"FPS batch {batch}", *STAGES, "peak MiB"], ())]
    outcomes: dict[str, str] = {}
    done: list[str] = []

    def record(name: str, outcome: str, entry: dict, line: str | None = None) -> None:
        outcomes[name] = outcome
        details["configurations"][name] = {"outcome": outcome, **entry}
        if line:
            lines.append(line)
        ctx.write(configuration_verdict(outcomes), _verdict_line(outcomes, done), details, lines)

    for key in ctx.bundles:
        targets, passes = samples[key]
        folder, why = wait_for_bundle(ctx, key, reserve_s=NEEDS_S[key])
        if folder is None:
            for setting in settings:
                record(f"{key} {setting}", "skipped", {"why": why}, table_row([key, setting, f"skipped: {why}"]))
            continue
        inputs = scene_inputs(shots=1, targets=targets)
        bundle = load_bundle(folder)
        authors_fp32 = authors_way.load_model(folder, ctx.device)
        for setting, choice in settings.items():
            name = f"{key} {setting}"
            if ctx.left() < NEEDS_S[key]:
                why = f"{ctx.left():.0f} s left, it needs {NEEDS_S[key]:.0f} s"
                record(name, "skipped", {"why": why}, table_row([key, setting, f"skipped: {why}"]))
                continue
            try:
                set_tf32(choice["tf32"])
                model = authors_fp32 if not choice["tf32"] else replace(
                    authors_fp32, backbone=autocast_backbone(authors_fp32.backbone))
                ours, authors, iou = measure_both(
                    OursOnDevice(bundle, ctx.torch_backend, choice["precision"], inputs, batch, meter),
                    AuthorsOnDevice(model, inputs, meter), passes)
            except Exception as exc:  # noqa: BLE001 - one configuration's error is its outcome, the others still run
                why = f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
                record(name, "failed", {"why": why}, table_row([key, setting, f"FAILED: {why}"]))
                meter.release()
                continue
            speedup = ours["fps_batch_1"] / authors["fps_batch_1"]
            agrees = iou >= MIN_MASK_IOU[setting]
            done.append(f"{name}: {speedup:.1f}x at batch 1, IoU {iou:.3f}")
            entry = {"ours": ours, "authors": authors, "mask_mean_iou": iou, "speedup_batch_1": speedup}
            if not agrees:
                entry["why"] = f"masks' mean IoU {iou:.3f} < {MIN_MASK_IOU[setting]}"
            lines += [_row(key, setting, "ours", ours)]
            record(name, "passed" if agrees else "failed", entry, _row(key, setting, "authors' way", authors))
            meter.release()
    ctx.write(configuration_verdict(outcomes), _verdict_line(outcomes, done), details, lines)


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name()
