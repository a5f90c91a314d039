"""The post-processing kernels (§4-§9) against the authors' way, side by side on this machine.

    insid3 bench kernels [--quick] [--repeats 5]

Features are synthetic (insid3.benchmarks.synthetic: seeded spatial blobs around a few dozen
centres, L2-normalised) at the two deployment shapes: ViT-L at 1024 px (N = 4096, C = 1024) and
ViT-S at 768 px (N = 2304, C = 384); --quick runs only the ViT-S shape. The authors' way is
insid3.authors_way, the one transcription of the published pipeline, in torch float32 on the CPU.

1. Clustering (§7, `clustering.py`), on the scene's features and on a "dense" variant whose
   patches share a direction (every pair closer than 1 - tau, like random-init ViT features):
   the authors' sklearn AgglomerativeClustering on 1 - clip(F F^T) against
   average_linkage_clusters(method="auto") (= "chain" on NumPy) and "reciprocal"; the
   partitions are asserted identical. "from F" includes the float32 Gram matrix every method
   needs; "from D" times the clustering alone on the same precomputed matrix.
2. Peak memory of each clustering method (`memory.py`): resident-set growth over the loaded
   features, each method in a fresh subprocess (C allocations included).
3. §4-§9 without clustering (`steps.py`): the authors' way (P projector, per-shot loops,
   per-cluster loops in §8, F.interpolate for the resizes) against the kernels (debiased
   features in DebiasFrame coordinates, as the engine), stage by stage, on the same inputs and
   the same cluster labels; the masks are asserted identical. The kernels vote backward only
   where the mask can depend on it (pruned_aggregate), so their matching and aggregation share
   one row.

Median of --repeats runs (>= 5), all methods interleaved in each repeat. Threads: NumPy's BLAS
follows OPENBLAS_NUM_THREADS, torch (the authors' side) OMP_NUM_THREADS; set both alike.
"""
