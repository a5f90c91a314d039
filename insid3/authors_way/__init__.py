"""insid3.authors_way: the one plain transcription of the published INSID3 pipeline.

This is the authors' algorithm as their code runs it, NOT the engine: one small torch function
per section of docs/algorithm.md (§1-§9), their loops kept (per shot in §5-§6, per cluster in
§8), sklearn's AgglomerativeClustering for §7 and F.interpolate for every resize. It is the
yardstick of every parity check: the end-to-end tests (tests/runtime/test_engine_parity.py), the
kernel tests' oracle (tests/support/kernel_oracle.py, a NumPy view of these functions), the baseline of
`insid3-bench --compare-reference` and the "authors' way" side of the kernel benchmark.

Torch semantics throughout: inputs and outputs are torch tensors and every step computes in
the dtype it is given, so float32 features reproduce the authors' own float32 arithmetic and
float64 features give a float64 yardstick (the kernel tests use that). Features are laid out
(N, C), one row per patch, where the authors keep (C, h, w) maps: the same formulas, though a
float32 reduction may round differently in its last bit, as it does between their GPU and any
CPU. The engine never imports this package; it needs torch (the `export` extra) and, for §7,
scikit-learn (the `bench` or `test` extra).
"""

from insid3.authors_way.aggregation import above_merge_threshold, aggregate, cluster_prototypes
from insid3.authors_way.candidates import backward_candidates, forward_candidates, forward_similarity
from insid3.authors_way.clustering import agglomerative_labels, cluster, cosine_distances, same_partition
from insid3.authors_way.debias import debias
from insid3.authors_way.episode import segment, segment_features
from insid3.authors_way.model import AuthorsModel, encode_together, load_model
from insid3.authors_way.preprocess import preprocess_image, preprocess_shot
from insid3.authors_way.reference_side import downsample_mask, prototype
from insid3.authors_way.resize import interpolate
from insid3.authors_way.upsample import upsample

__all__ = [
    "AuthorsModel",
    "above_merge_threshold",
    "agglomerative_labels",
    "aggregate",
    "backward_candidates",
    "cluster",
    "cluster_prototypes",
    "cosine_distances",
    "debias",
    "downsample_mask",
    "encode_together",
    "forward_candidates",
    "forward_similarity",
    "interpolate",
    "load_model",
    "preprocess_image",
    "preprocess_shot",
    "prototype",
    "same_partition",
    "segment",
    "segment_features",
    "upsample",
]
