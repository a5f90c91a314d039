"""§4-§9 without the clustering: the authors' way against the kernels, stage by stage, the two
sides (StepsSide) driven by the side-by-side harness (benchmarks/harness.py), passes interleaved."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from insid3 import authors_way
from insid3.benchmarks.harness import Pass, SideRun, differing, in_process, run_side_by_side
from insid3.benchmarks.kernels.shapes import MERGE_THRESHOLD, ORIGINAL_SIZE, TAU, Shape, features_for
from insid3.benchmarks.synthetic import synthetic_basis
from insid3.benchmarks.writer import table
from insid3.kernels import (
    ReferenceSide,
    average_linkage_clusters,
    debias_frame,
    debiased_coordinates,
    downsample_mask,
    forward_candidates,
    forward_similarity,
    prototype,
    pruned_aggregate,
    upsample_mask,
)
from insid3.kernels.debias import DebiasFrame

# The authors' stages, and ours: the kernels vote backward only where the mask can depend on it
# (pruned_aggregate, after the forward step), so their matching and aggregation are one stage.
STAGES = ("debias (S references)", "debias (target)", "reference masks + prototype",
          "matching (forward + backward)", "aggregation (§8)", "upsample (§9)")
OUR_STAGES = ("debias (S references)", "debias (target)", "reference masks + prototype",
              "forward matching (§6)", "backward votes + aggregation (§6 + §8, pruned)", "upsample (§9)")
PER_TARGET = OUR_STAGES[1:2] + OUR_STAGES[3:]
# Table rows: (name, the authors' stages, ours).
STEP_ROWS = (
    ("debias (S references)", STAGES[0:1], OUR_STAGES[0:1]),
    ("debias (target)", STAGES[1:2], OUR_STAGES[1:2]),
    ("reference masks + prototype", STAGES[2:3], OUR_STAGES[2:3]),
    ("matching + aggregation (§6 + §8)", STAGES[3:5], OUR_STAGES[3:5]),
    ("in it, matching: authors forward + backward (all N) / kernels forward only", STAGES[3:4], OUR_STAGES[3:4]),
    ("in it, aggregation: authors §8 / kernels pruned backward votes + §8", STAGES[4:5], OUR_STAGES[4:5]),
    ("upsample (§9)", STAGES[5:6], OUR_STAGES[5:6]),
)


@dataclass(frozen=True)
class StepsInputs:
    """A target and S reference views of one scene, every reference mask the same square; the
    NumPy arrays for the kernels, the same arrays as torch tensors for the authors' way."""

    target: np.ndarray  # (N, C) float32
    references: np.ndarray  # (S, N, C) float32
    masks: np.ndarray  # (S, R, R) bool
    labels: np.ndarray  # (N,) int64, the §7 partition both sides aggregate over
    frame: DebiasFrame
    frame_ms: float
    tensors: dict[str, torch.Tensor]  # target, references, masks, basis (C, s) and labels
    grid: int
    resolution: int


def steps_inputs(shape: Shape, shots: int) -> StepsInputs:
    target = features_for(shape, view=0)
    references = np.stack([features_for(shape, view=1 + i) for i in range(shots)])
    masks = np.zeros((shots, shape.resolution, shape.resolution), dtype=bool)
    side = shape.resolution // 3
    masks[:, side:2 * side, side:2 * side] = True
    labels = average_linkage_clusters(target, TAU)
    basis = synthetic_basis(shape.channels, shape.svd_components)
    start = time.perf_counter()
    frame = debias_frame(basis, shape.svd_components)
    frame_ms = (time.perf_counter() - start) * 1e3
    tensors = {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in (
        ("target", target), ("references", references), ("masks", masks),
        ("basis", basis[:, :shape.svd_components]), ("labels", labels))}
    return StepsInputs(target=target, references=references, masks=masks, labels=labels, frame=frame,
                       frame_ms=frame_ms, tensors=tensors, grid=shape.grid, resolution=shape.resolution)


def authors_steps(inputs: StepsInputs) -> Pass:
    """The authors' predict_mask after the backbone and without the clustering: insid3.authors_way
    in torch float32, its per-shot and per-cluster loops included."""
    t = inputs.tensors
    grid = (inputs.grid, inputs.grid)
    t0 = time.perf_counter()
    # The authors debias the S + 1 maps in one batched P @ X; split here to time both sides.
    references_debiased = authors_way.debias(t["references"], t["basis"])
    t1 = time.perf_counter()
    target_debiased = authors_way.debias(t["target"], t["basis"])
    t2 = time.perf_counter()
    patch_masks = torch.stack([authors_way.downsample_mask(mask, grid).reshape(-1) for mask in t["masks"]])
    proto = authors_way.prototype(references_debiased, patch_masks)
    t3 = time.perf_counter()
    similarity = authors_way.forward_similarity(target_debiased, proto)
    candidate = authors_way.forward_candidates(similarity) & authors_way.backward_candidates(
        target_debiased, references_debiased, patch_masks
    )
    t4 = time.perf_counter()
    patch_mask = authors_way.aggregate(
        t["labels"], candidate, t["target"], target_debiased, similarity, proto, MERGE_THRESHOLD
    )
    t5 = time.perf_counter()
    out = authors_way.upsample(patch_mask.reshape(grid), inputs.resolution, ORIGINAL_SIZE)
    t6 = time.perf_counter()
    return _timed_pass(STAGES, (t0, t1, t2, t3, t4, t5, t6), out.numpy())


def kernels_steps(inputs: StepsInputs, info: dict | None = None) -> Pass:
    """The same steps through insid3.kernels, as the engine calls them: debiased features in the
    DebiasFrame coordinates (the frame is built once per Segmenter, timed apart); forward
    matching, then backward votes and §8 together (pruned_aggregate: votes only for the forward
    patches whose votes can change the mask). info["voted"] gets the number of voted patches."""
    t0 = time.perf_counter()
    references_debiased = debiased_coordinates(inputs.references, inputs.frame)
    t1 = time.perf_counter()
    target_debiased = debiased_coordinates(inputs.target, inputs.frame)
    t2 = time.perf_counter()
    down = np.stack([downsample_mask(m, inputs.grid).reshape(-1) for m in inputs.masks])
    proto = prototype(references_debiased, down)
    t3 = time.perf_counter()
    sim_fwd = forward_similarity(target_debiased, proto)
    forward = forward_candidates(sim_fwd)
    t4 = time.perf_counter()
    result = pruned_aggregate(
        labels=inputs.labels, forward=forward, features=inputs.target, debiased=target_debiased, sim_fwd=sim_fwd,
        reference=ReferenceSide(debiased=references_debiased, patch_masks=down, prototype=proto),
        merge_threshold=MERGE_THRESHOLD,
    )
    t5 = time.perf_counter()
    out = upsample_mask(result.patch_mask.reshape(inputs.grid, inputs.grid), inputs.resolution, ORIGINAL_SIZE)
    t6 = time.perf_counter()
    if info is not None:
        info["voted"], info["forward"] = result.voted_rows, int(forward.sum())
    return _timed_pass(OUR_STAGES, (t0, t1, t2, t3, t4, t5, t6), out)


def _timed_pass(names: tuple[str, ...], boundaries: tuple[float, ...], mask: np.ndarray) -> Pass:
    stages = {name: float(dt) * 1e3 for name, dt in zip(names, np.diff(boundaries))}
    return Pass(seconds=(boundaries[-1] - boundaries[0]), units=1, outputs=(mask,), stages_ms=stages)


class StepsSide:
    """One side of the steps benchmark (a harness.Side): the inputs are built once, outside the
    timing; a pass is one call of `steps`."""

    def __init__(self, inputs: StepsInputs, steps: Callable[[StepsInputs], Pass]) -> None:
        self.inputs, self.steps = inputs, steps

    def start(self) -> None:
        pass

    def warm_up(self) -> None:
        pass  # the first of the medians' runs is measured, as it always was here

    def measure_pass(self) -> Pass:
        return self.steps(self.inputs)

    def finish(self) -> None:
        pass


def bench_steps(shape: Shape, shots: int, repeats: int) -> list[str]:
    inputs = steps_inputs(shape, shots)
    info: dict = {}
    runs = run_side_by_side(
        [in_process("authors' way", lambda: StepsSide(inputs, authors_steps)),
         in_process("kernels", lambda: StepsSide(inputs, lambda i: kernels_steps(i, info)))],
        repeats,
    )
    authors, ours = runs["authors' way"], runs["kernels"]
    if differing([p.outputs[0] for p in authors.passes], [p.outputs[0] for p in ours.passes]):
        raise AssertionError("kernel mask differs from the authors' way")
    expected = authors.outputs()[0]

    def total(run: SideRun, names) -> float:
        return statistics.median([sum(one.stages_ms[n] for n in names) for one in run.passes]) / 1e3

    k = int(inputs.labels.max()) + 1
    rows = [f"### Steps 4-9 without clustering, {shape.name}, {shots} shot(s), {k} clusters, "
            f"s = {shape.svd_components}; masks identical: yes ({expected.mean():.1%} of the pixels foreground)", ""]
    body = []
    for name, theirs, mine in STEP_ROWS:
        a, o = total(authors, theirs), total(ours, mine)
        body.append((name, f"{a * 1e3:.1f}", f"{o * 1e3:.1f}", f"{a / o:.1f}x"))
    a_all, o_all = total(authors, STAGES), total(ours, OUR_STAGES)
    o_target = total(ours, PER_TARGET)
    body.append(("**all stages**", f"{a_all * 1e3:.1f}", f"{o_all * 1e3:.1f}", f"{a_all / o_all:.1f}x"))
    body.append(("**per target** (kernels: reference side cached, as the engine does; the authors recompute it)",
                 f"{a_all * 1e3:.1f}", f"{o_target * 1e3:.1f}", f"{a_all / o_target:.1f}x"))
    rows += table(("stage", "authors' way (ms)", "kernels (ms)", "speed-up"), body, "lrrr")
    frame = inputs.frame
    n = shape.patches
    rows += ["", f"Backward votes: the kernels voted {info['voted']} of the N = {n} target patches "
             f"({info['voted'] / n:.1%}; {info['forward']} are forward candidates), the authors' way all {n} "
             f"per shot: only the seed walk and the clusters whose score bounds straddle the threshold need votes.",
             "", f"Debiased coordinates: D = {frame.width} of C = {shape.channels} "
             f"({'complement of span(B)' if frame.complement is not None else 'original'}); "
             f"the frame is built once per Segmenter in {inputs.frame_ms:.0f} ms (not per target, not in the table)."]
    return rows + [""]
