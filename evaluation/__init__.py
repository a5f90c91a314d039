"""insid3.evaluation: the paper's in-context segmentation benchmarks through the engine.

`insid3-eval` (cli.py) runs one benchmark the way the authors' evaluation script does: the same
episodes (datasets/, drawn by sampling.py from numpy's legacy RNG seeded with 0), the prediction
and ground truth compared on the R x R grid (grid.py), intersection and union in two bins and
accumulated in float32 (metrics.py), with the engine's Segmenter doing the segmentation
(runner.py: a feature cache keyed by image content, the backbone batched across episodes,
decoding overlapping encoding). The episode log (episode_log.py) makes a run resumable; the
report (report.py) is JSON and a markdown table laid out like the paper's Table 1.

docs/evaluation.md describes the datasets' layouts and the protocol.
"""

if __name__ != "insid3.evaluation":  # imported as `evaluation` with the repository root on sys.path
    from insid3.shadowing import yield_to_installed

    yield_to_installed(__name__, __file__)
