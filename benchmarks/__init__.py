"""insid3.benchmarks: measuring the engine, beside the authors' way (the `bench` extra).

Nothing in the runtime imports this package; it imports the runtime (insid3.engine,
insid3.kernels) and, in the authors' side only, the torch transcription insid3.authors_way.

The side-by-side harness (`harness.py`) is the one loop every "ours against the authors' way"
measurement goes through: `insid3 bench`, `insid3 eval speed` (evaluation/speed.py), the kernel
benchmark's steps (kernels/steps.py) and the GPU acceptance's side-by-side phase
(gpu_side_by_side.py). A side prepares its inputs, runs one measured pass and returns what it made;
the harness interleaves the sides' passes (or runs them one after the other where a device-wide
high-water mark must be one side's), takes medians and compares the outputs. Every report is
written by `writer.py` (JSON, markdown tables, the plot's file).

`insid3 bench` (bench.py), one bundle, our engine beside the authors' way:
- ours (`ours.py`): the Segmenter with one cached reference, per stage (StageClock, synchronised
  at every stage boundary), end-to-end latency percentiles, throughput per batch size, the
  one-off reference encoding and the cold start;
- the authors' way (`authors_side.py`): insid3.authors_way, torch eager + sklearn + Python loops,
  the references re-encoded with every target, as the published code runs;
- each side in its own fresh process (`isolation.py`), so peak memory is that side's alone, and
  the measured passes interleaved between the sides (`harness.py`);
- the backbone's FLOPs and the device's physical floor (`flops.py`).

The other tools, each a sub-verb `insid3 bench <name>` (docs/cli.md):
- `suite` (suite.py): small / base / large x 768 / 1024 px through insid3 bench, with the FLOP table;
- `kernels` (kernels/): the post-processing kernels against the authors' way, stage by stage;
- `concepts`, `match`, `crf`, `crf-build`, `ray-jobs` (concepts.py, correspondence.py, crf.py,
  crf_authors.py, ray_jobs.py): one feature's cost each;
- `serve` (loadgen.py): insid3 serve under concurrent clients, dynamic batching on vs off;
- `gpu-acceptance` (gpu_acceptance.py): the prepared GPU acceptance run (GPU tests, torch-cuda parity, ours vs the
  authors' way on one GPU, RoPE rescale factors) inside an 8-minute budget (benchmarks/GPU.md).
`synthetic.py` draws the seeded patch features the kernel tests and benchmark run on.
"""

if __name__ != "insid3.benchmarks":  # imported as `benchmarks` with the repository root on sys.path
    from insid3.shadowing import yield_to_installed

    yield_to_installed(__name__, __file__)
