"""insid3.engine.bench: `insid3-bench`, the engine measured side by side with the authors' way.

What it measures and how (each choice is documented where it is made):
- ours (`ours.py`): the Segmenter with one cached reference, per stage (StageClock, synchronised
  at every stage boundary), end-to-end latency percentiles, throughput per batch size, the
  one-off reference encoding and the cold start;
- the authors' way (`authors_way.py`, `reference_side.py`): torch eager + sklearn + Python loops,
  reference re-encoded with every target, as the published code runs;
- each side in its own fresh process (`isolation.py`), so peak memory is that side's alone, and
  the measured passes interleaved between the sides (`side_by_side.py`);
- the backbone's FLOPs and the device's physical floor (`flops.py`).
"""
