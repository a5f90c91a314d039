"""Post-processing kernels (INSID3 steps 4-9) against the authors' way, side by side on this CPU.

    python benchmarks/bench_kernels.py [--quick] [--repeats 5]

Features are synthetic (insid3.kernels.synthetic: seeded spatial blobs around a few dozen
centres, L2-normalised) at the two deployment shapes: ViT-L at 1024 px (N = 4096, C = 1024) and
ViT-S at 768 px (N = 2304, C = 384); --quick runs only the ViT-S shape.

1. Clustering (doc §7), on the scene's features and on a "dense" variant whose patches share a
   direction (every pair closer than 1 - tau, like random-init ViT features): sklearn
   AgglomerativeClustering on 1 - clip(F F^T) (the reference) against
   average_linkage(method="auto") (= "chain" on NumPy), "components" and "reciprocal";
   the partitions are asserted identical. "from F" includes the float32 Gram matrix every
   method needs; "from D" times the clustering alone on the same precomputed matrix.
2. Peak memory of each clustering method: resident-set growth over the loaded features, each
   method in a fresh subprocess (covers fastcluster's and scipy's C allocations too).
3. Steps 4-9 without clustering: the authors' code transcribed to NumPy (P_perp projector,
   per-shot loops, per-cluster loops in §8, torch F.interpolate for the resizes) against the
   kernels (debiased features in DebiasFrame coordinates, as the engine), stage by stage, on
   the same inputs and the same cluster labels. The kernels vote backward only where the mask
   can depend on it (pruned_aggregate), so their matching and aggregation share one row.

Median of --repeats runs (>= 5), all methods interleaved in each repeat.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insid3.kernels import (
    average_linkage,
    cosine_distances,
    debias_frame,
    debiased_coordinates,
    downsample_mask,
    forward_candidates,
    forward_similarity,
    prototype,
    pruned_aggregate,
    upsample_mask,
)
from insid3.kernels.linkage_chain import chain_linkage
from insid3.kernels.linkage_components import component_linkage
from insid3.kernels.linkage_reciprocal import float32_limit, reciprocal_linkage
from insid3.kernels.synthetic import synthetic_basis, synthetic_patch_features

TAU, MERGE_THRESHOLD = 0.6, 0.2
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
class Shape:
    name: str
    grid: int  # h = w
    channels: int
    resolution: int
    svd_components: int

    @property
    def patches(self) -> int:
        return self.grid * self.grid


VIT_L_1024 = Shape("ViT-L 1024px", 64, 1024, 1024, 500)
VIT_S_768 = Shape("ViT-S 768px", 48, 384, 768, 180)
ORIGINAL_SIZE = (480, 640)


def features_for(shape: Shape, view: int = 0) -> np.ndarray:
    """One view of the benchmark scene; views differ only in their noise."""
    return synthetic_patch_features(shape.grid, shape.grid, shape.channels, centres=40, noise=0.65, seed=0,
                                     noise_seed=None if view == 0 else 1000 + view)


# Weight of a direction shared by every patch in the "dense" clustering case: every pair is then
# closer than 1 - tau, as for random-init ViT features (81% of the pairs at ViT-S 768 px), and
# the clustering takes linkage_dense_chain's path instead of the sparse chain.
DENSE_SHARED_WEIGHT = 1.5


def dense_features_for(shape: Shape) -> np.ndarray:
    features = features_for(shape).astype(np.float64)
    shared = np.random.default_rng(7).standard_normal(shape.channels)
    features += DENSE_SHARED_WEIGHT * shared / np.linalg.norm(shared)
    return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


# ---------------------------------------------------------------------------------- clustering
def sklearn_from_distances(distances: np.ndarray) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=float(1.0 - TAU)
    ).fit_predict(distances)


def sklearn_from_features(features: np.ndarray) -> np.ndarray:
    return sklearn_from_distances(1.0 - np.clip(features @ features.T, -1, 1))


def bench_clustering(shape: Shape, repeats: int, *, dense: bool = False) -> tuple[list[str], dict]:
    features = dense_features_for(shape) if dense else features_for(shape)
    distances = cosine_distances(features)
    threshold = 1.0 - TAU
    # Compile / load the Numba kernels and warm every path once, untimed.
    average_linkage(features[:64], TAU, method="chain")
    sklearn_from_distances(distances[:64, :64])
    runs: dict[str, list[float]] = {k: [] for k in (
        "gram", "sk_F", "sk_D", "auto_F", "auto_D", "comp_F", "comp_D", "rec_F", "rec_D")}
    info = {}
    for _ in range(repeats):
        runs["gram"].append(timed(cosine_distances, features)[0])
        t, expected = timed(sklearn_from_features, features)
        runs["sk_F"].append(t)
        runs["sk_D"].append(timed(sklearn_from_distances, distances)[0])
        t, auto = timed(lambda: average_linkage(features, TAU))
        runs["auto_F"].append(t)
        runs["auto_D"].append(timed(lambda: chain_linkage(distances, threshold, from_gram=False))[0])
        t, comp = timed(lambda: average_linkage(features, TAU, method="components"))
        runs["comp_F"].append(t)
        t, (_, components) = timed(component_linkage, distances, threshold)
        runs["comp_D"].append(t)
        t, rec = timed(lambda: average_linkage(features, TAU, method="reciprocal"))
        runs["rec_F"].append(t)
        scratch = distances.copy()  # reciprocal overwrites its matrix; the copy is not timed
        runs["rec_D"].append(timed(reciprocal_linkage, scratch, threshold)[0])
        assert auto.method == "chain"
        for name, result in (("auto", auto), ("components", comp), ("reciprocal", rec)):
            assert same_partition(result.labels, expected), f"{name} partition differs from sklearn"
        edges = int(np.count_nonzero(np.triu(distances < float32_limit(threshold), 1)))
        info = {"clusters": auto.n_clusters, "components": components, "rounds": rec.rounds, "edges": edges}
    med = {k: statistics.median(v) for k, v in runs.items()}
    n, c = shape.patches, shape.channels
    pairs = n * (n - 1) // 2
    title = (f"### Clustering, {shape.name}{', dense graph' if dense else ''}: N = {n}, C = {c}, tau = {TAU} "
             f"({info['clusters']} clusters; {info['edges']} of {pairs} pairs closer than 1 - tau, "
             f"{info['components']} graph components; reciprocal: {info['rounds']} rounds); "
             "partitions identical to sklearn: yes")

    def row(name: str, f: str, d: str) -> str:
        return (f"| {name} | {med[f] * 1e3:.0f} | {med[d] * 1e3:.0f} | "
                f"{med['sk_F'] / med[f]:.1f}x | {med['sk_D'] / med[d]:.1f}x |")

    rows = [
        title, "",
        "| method | from F (ms) | from D (ms) | speed-up from F | speed-up from D |",
        "|---|---:|---:|---:|---:|",
        row("sklearn (reference)", "sk_F", "sk_D"),
        row("**auto = chain**", "auto_F", "auto_D"),
        row("components (fastcluster)", "comp_F", "comp_D"),
        row("reciprocal (float32)", "rec_F", "rec_D"),
        "",
        f"\"From F\" includes the Gram matrix: sklearn's side and components/reciprocal build the full "
        f"float32 distance matrix ({med['gram'] * 1e3:.0f} ms of it); chain reads the upper triangle of one "
        "ssyrk Gram matrix directly. \"From D\" starts from the float32 distance matrix.",
        "",
    ]
    return rows, info


# -------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def memory_probe(method: str, path: str) -> None:
    """Child process: load the features, then report the peak RSS growth of one clustering.

    Uses VmHWM (the peak of this process's own address space) after resetting it through
    /proc/self/clear_refs; getrusage's ru_maxrss would include the parent's RSS at fork time.
    """
    features = np.load(path)
    if method != "sklearn":  # load the Numba kernels first: their code is not the method's data
        average_linkage(features[:8], TAU, method=method)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    baseline = _status_kib("VmRSS")
    if method == "sklearn":
        sklearn_from_features(features)
    else:
        average_linkage(features, TAU, method=method)
    print((_status_kib("VmHWM") - baseline) * 1024)


def bench_memory(shape: Shape) -> list[str]:
    features = features_for(shape)
    rows = [f"### Peak memory of one clustering, {shape.name} (RSS growth over the loaded features)", "",
            "| method | peak (MiB) |", "|---|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "features.npy")
        np.save(path, features)
        # Import everything first so module loading is not counted against a method.
        warm = ("import numpy, scipy, sklearn.cluster, fastcluster, insid3.kernels.linkage_components, "
                "insid3.kernels.linkage_chain; ")
        for method in ("sklearn", "chain", "components", "reciprocal"):
            code = (warm + "import sys; sys.argv = ['x']; sys.path.insert(0, %r); "
                    "import bench_kernels; bench_kernels.memory_probe(%r, %r)") % (str(Path(__file__).parent), method, path)
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            rows.append(f"| {method} | {int(out.stdout.split()[-1]) / 2**20:.0f} |")
    return rows + [""]


# ------------------------------------------------------------------------- steps 4-9 (no §7)
def _torch_interpolate(array2d: np.ndarray, size, mode: str) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(array2d, dtype=np.float32))[None, None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return torch.nn.functional.interpolate(x, size=tuple(size), mode=mode, **kwargs)[0, 0].numpy()


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _authors_aggregation(target, target_deb, labels, candidate, sim_fwd, proto) -> np.ndarray:
    """_seed_and_aggregate with its per-cluster loops (compute_cluster_prototypes twice, cross)."""
    k = int(labels.max()) + 1
    matched_ids, hits = np.unique(labels[candidate], return_counts=True)
    areas = np.unique(labels, return_counts=True)[1]
    area_weights = np.zeros(k, dtype=np.float32)
    area_weights[matched_ids] = hits
    area_weights /= areas
    deb_protos = np.stack([_normalize(target_deb[labels == c].mean(axis=0)) for c in range(k)])
    seed = matched_ids[int(np.argmax(deb_protos[matched_ids] @ proto))]
    orig_protos = np.stack([_normalize(target[labels == c].mean(axis=0)) for c in range(k)])
    intra = orig_protos @ orig_protos[seed]
    cross = np.array([sim_fwd[labels == c].mean() for c in range(k)], dtype=np.float32)
    combined = cross * intra
    area_weights[seed] = 1.0
    combined *= area_weights
    return combined[labels] > MERGE_THRESHOLD


def authors_way(inputs: dict, stages: dict) -> np.ndarray:
    """models/insid3.py's predict_mask after the backbone, transcribed to NumPy float32 (torch
    only for F.interpolate), with its per-shot and per-cluster loops. Stage times go to stages."""
    target, refs, masks, basis, s = inputs["target"], inputs["refs"], inputs["masks"], inputs["basis"], inputs["s"]
    grid, labels = inputs["grid"], inputs["labels"]
    t0 = time.perf_counter()
    b = basis[:, :s]
    p_perp = np.eye(basis.shape[0], dtype=np.float32) - b @ b.T
    # The reference debiases the S + 1 maps in one batched P_perp @ X; split to time both sides.
    refs_deb = _normalize((p_perp[None] @ refs.transpose(0, 2, 1)).transpose(0, 2, 1))
    t1 = time.perf_counter()
    target_deb = _normalize((p_perp @ target.T).T)
    t2 = time.perf_counter()
    down = []
    protos = []
    for shot in range(refs.shape[0]):
        d = _torch_interpolate(masks[shot], (grid, grid), "bilinear") > 0.5
        if d.sum() == 0:
            d = _torch_interpolate(masks[shot], (grid, grid), "nearest") > 0.5
        down.append(d.reshape(-1))
        fg = refs_deb[shot][d.reshape(-1)]
        if fg.shape[0] > 0:
            protos.append(fg.mean(axis=0))
    proto = _normalize(np.stack(protos).mean(axis=0))
    t3 = time.perf_counter()
    sim_fwd = target_deb @ proto
    forward = sim_fwd > 0
    if forward.sum() == 0:
        forward = sim_fwd > np.quantile(sim_fwd, 0.9)
    votes = np.zeros(target.shape[0], dtype=np.int32)
    for shot in range(refs.shape[0]):
        sim = refs_deb[shot] @ target_deb.T  # (Nr, N) as the reference's einsum
        votes += down[shot][sim.T.argmax(axis=1)]
    candidate = forward & (votes >= math.ceil(refs.shape[0] / 2))
    t4 = time.perf_counter()
    if candidate.sum() == 0:  # the reference returns the (empty) candidate mask
        patch_mask = candidate.reshape(grid, grid)
    else:
        patch_mask = _authors_aggregation(target, target_deb, labels, candidate, sim_fwd, proto).reshape(grid, grid)
    t5 = time.perf_counter()
    square = _torch_interpolate(patch_mask, (inputs["resolution"],) * 2, "bilinear") > 0.5
    out = _torch_interpolate(square, ORIGINAL_SIZE, "bilinear") > 0.5
    t6 = time.perf_counter()
    for name, dt in zip(STAGES, np.diff([t0, t1, t2, t3, t4, t5, t6])):
        stages.setdefault(name, []).append(dt)
    return out


def kernels_way(inputs: dict, stages: dict, info: dict | None = None) -> np.ndarray:
    """The same steps through insid3.kernels, as the engine calls them: debiased features in the
    DebiasFrame coordinates (the frame is built once per Segmenter, timed apart); forward
    matching, then backward votes and §8 together (pruned_aggregate: votes only for the forward
    patches whose votes can change the mask). info["voted"] gets the number of voted patches."""
    target, refs, masks, frame = inputs["target"], inputs["refs"], inputs["masks"], inputs["frame"]
    grid, labels = inputs["grid"], inputs["labels"]
    t0 = time.perf_counter()
    refs_deb = debiased_coordinates(refs, frame)
    t1 = time.perf_counter()
    target_deb = debiased_coordinates(target, frame)
    t2 = time.perf_counter()
    down = np.stack([downsample_mask(m, grid).reshape(-1) for m in masks])
    proto = prototype(refs_deb, down)
    t3 = time.perf_counter()
    sim_fwd = forward_similarity(target_deb, proto)
    forward = forward_candidates(sim_fwd)
    t4 = time.perf_counter()
    result = pruned_aggregate(labels, forward, target, target_deb, sim_fwd, proto, refs_deb, down, MERGE_THRESHOLD)
    t5 = time.perf_counter()
    out = upsample_mask(result.patch_mask.reshape(grid, grid), inputs["resolution"], ORIGINAL_SIZE)
    t6 = time.perf_counter()
    for name, dt in zip(OUR_STAGES, np.diff([t0, t1, t2, t3, t4, t5, t6])):
        stages.setdefault(name, []).append(dt)
    if info is not None:
        info["voted"], info["forward"] = result.voted_rows, int(forward.sum())
    return out


def steps_inputs(shape: Shape, shots: int) -> dict:
    """Target and S reference views of one scene; every reference mask covers the same square."""
    target = features_for(shape, view=0)
    refs = np.stack([features_for(shape, view=1 + i) for i in range(shots)])
    masks = np.zeros((shots, shape.resolution, shape.resolution), dtype=bool)
    side = shape.resolution // 3
    masks[:, side:2 * side, side:2 * side] = True
    labels = average_linkage(target, TAU).labels
    basis = synthetic_basis(shape.channels, shape.svd_components)
    start = time.perf_counter()
    frame = debias_frame(basis, shape.svd_components)
    frame_ms = (time.perf_counter() - start) * 1e3
    return dict(target=target, refs=refs, masks=masks, basis=basis, frame=frame, frame_ms=frame_ms,
                s=shape.svd_components, grid=shape.grid, resolution=shape.resolution, labels=labels)


def bench_steps(shape: Shape, shots: int, repeats: int) -> list[str]:
    inputs = steps_inputs(shape, shots)
    authors: dict[str, list[float]] = {}
    ours: dict[str, list[float]] = {}
    info: dict = {}
    for _ in range(repeats):
        expected = authors_way(inputs, authors)
        got = kernels_way(inputs, ours, info)
        assert np.array_equal(expected, got), "kernel mask differs from the authors' way"

    def total(times: dict, names) -> float:
        return statistics.median([sum(times[n][i] for n in names) for i in range(repeats)])

    k = int(inputs["labels"].max()) + 1
    rows = [f"### Steps 4-9 without clustering, {shape.name}, {shots} shot(s), {k} clusters, "
            f"s = {shape.svd_components}; masks identical: yes ({expected.mean():.1%} of the pixels foreground)", "",
            "| stage | authors' way (ms) | kernels (ms) | speed-up |", "|---|---:|---:|---:|"]
    for name, theirs, mine in STEP_ROWS:
        a, o = total(authors, theirs), total(ours, mine)
        rows.append(f"| {name} | {a * 1e3:.1f} | {o * 1e3:.1f} | {a / o:.1f}x |")
    a_all, o_all = total(authors, STAGES), total(ours, OUR_STAGES)
    o_target = total(ours, PER_TARGET)
    rows.append(f"| **all stages** | {a_all * 1e3:.1f} | {o_all * 1e3:.1f} | {a_all / o_all:.1f}x |")
    rows.append(f"| **per target** (kernels: reference side cached, as the engine does; "
                f"the reference recomputes it) | {a_all * 1e3:.1f} | {o_target * 1e3:.1f} | {a_all / o_target:.1f}x |")
    frame = inputs["frame"]
    n = shape.patches
    rows += ["", f"Backward votes: the kernels voted {info['voted']} of the N = {n} target patches "
             f"({info['voted'] / n:.1%}; {info['forward']} are forward candidates), the authors' way all {n} "
             f"per shot: only the seed walk and the clusters whose score bounds straddle the threshold need votes.",
             "", f"Debiased coordinates: D = {frame.width} of C = {shape.channels} "
             f"({'complement of span(B)' if frame.complement is not None else 'original'}); "
             f"the frame is built once per Segmenter in {inputs['frame_ms']:.0f} ms (not per target, not in the table)."]
    return rows + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ViT-S 768px only")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (>= 5; median reported)")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 (medians of at least five runs)")
    shapes = [VIT_S_768] if args.quick else [VIT_L_1024, VIT_S_768]
    print(f"# insid3 kernels benchmark ({'quick' if args.quick else 'full'}, median of {args.repeats})\n")
    for dense in (False, True):
        for shape in shapes:
            rows, _ = bench_clustering(shape, args.repeats, dense=dense)
            print("\n".join(rows), flush=True)
    for shape in shapes:
        print("\n".join(bench_memory(shape)), flush=True)
    for shape in shapes:
        for shots in ((1,) if args.quick else (1, 5)):
            print("\n".join(bench_steps(shape, shots, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
