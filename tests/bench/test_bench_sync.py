"""Every stage boundary synchronises, on our side and on the authors' way (fake synchronize)."""

import numpy as np
import pytest

from insid3.benchmarks.inputs import scene_inputs
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import STAGES, StageClock


class RecordingSync:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def test_segmenter_syncs_before_and_after_every_stage(tiny_bundle):
    inputs = scene_inputs(shots=1, targets=1, size=(64, 80))
    segmenter = Segmenter.from_bundle(tiny_bundle, "onnxruntime")
    segmenter.set_reference(*inputs.shots[0])
    sync = RecordingSync()
    segmenter.backend.synchronize = sync  # the hook StageClock reads when segment() starts
    segmenter.segment(inputs.targets[0])
    assert sync.calls == 2 * len(STAGES)
    assert set(segmenter.last_timings) == set(STAGES)


def test_authors_way_syncs_before_and_after_every_stage(tiny_bundle):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from insid3 import authors_way

    inputs = scene_inputs(shots=1, targets=1, size=(64, 80))
    model = authors_way.load_model(tiny_bundle)
    sync = RecordingSync()
    clock = StageClock(sync)
    mask = authors_way.segment(model, inputs.shots, inputs.targets[0], clock)
    assert sync.calls == 2 * len(STAGES) and set(clock.ms) == set(STAGES)
    assert mask.shape == (64, 80) and mask.dtype == np.bool_
