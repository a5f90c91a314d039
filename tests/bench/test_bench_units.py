"""The benchmark's pieces without a bundle: statistics, inputs, synchronisation, memory sampling."""

import types

import numpy as np
import pytest
from PIL import Image

from insid3.benchmarks.inputs import folder_inputs, scene_inputs
from insid3.benchmarks.memory import DeviceHighWater, peak_rss_mb, sampling
from insid3.benchmarks.passes import measure_pass, pass_times, warm_up
from insid3.benchmarks.stats import PassTimes, mask_iou, mean_iou, summarise
from insid3.engine.runtime.timing import STAGES, StageClock, device_synchronizer, no_sync
from insid3.errors import InputImageError


# ---------------------------------------------------------------- statistics
def test_summary_percentiles_and_fps_are_consistent():
    times = PassTimes(
        latencies_ms=((100.0, 200.0), (100.0, 100.0), (400.0, 400.0)),
        stages_ms=tuple({"backbone": ms * 0.5, "clustering": ms * 0.25} for ms in (100, 200, 100, 100, 400, 400)),
    )
    summary = summarise(times)
    assert summary["fps_per_pass"] == pytest.approx([2000 / 300, 10.0, 2.5])
    assert summary["fps"] == pytest.approx(2000 / 300)  # the median pass
    assert summary["latency_ms"]["p50"] == pytest.approx(150.0)
    assert summary["latency_ms"]["mean"] == pytest.approx(1300 / 6)
    assert summary["latency_ms"]["p99"] == pytest.approx(np.percentile([100, 200, 100, 100, 400, 400], 99))
    assert summary["stages_ms"]["backbone"] == pytest.approx(1300 / 12)
    assert summary["stages_ms"]["upsample"] == 0.0 and set(summary["stages_ms"]) == set(STAGES)


def test_pass_times_refuse_empty():
    with pytest.raises(ValueError):
        PassTimes(latencies_ms=(), stages_ms=())


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert mask_iou(a, b) == 1.0  # both empty agree
    a[0, :2] = True
    b[0, 1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    assert mean_iou([a, a], [b, a]) == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((2, 2), bool))


# ---------------------------------------------------------------- inputs
def _save(path, array):
    Image.fromarray(array).save(path)


def test_folder_naming_rule(tmp_path):
    image = np.full((20, 30, 3), 100, np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 255
    for name in ("b_ref", "a_ref"):
        _save(tmp_path / f"{name}.png", image)
        _save(tmp_path / f"{name}.mask.png", mask)
    _save(tmp_path / "target1.jpg", image)
    _save(tmp_path / "target2.png", image)
    (tmp_path / "notes.txt").write_text("not an image")

    inputs = folder_inputs(tmp_path, shots=1)
    assert inputs.shots == ((tmp_path / "a_ref.png", tmp_path / "a_ref.mask.png"),)  # name order
    assert inputs.targets == (tmp_path / "target1.jpg", tmp_path / "target2.png")
    assert len(folder_inputs(tmp_path, shots=2).shots) == 2

    with pytest.raises(InputImageError, match="3 shot"):
        folder_inputs(tmp_path, shots=3)


def test_folder_errors(tmp_path):
    with pytest.raises(InputImageError, match="not a folder"):
        folder_inputs(tmp_path / "missing", shots=1)
    _save(tmp_path / "only.png", np.zeros((8, 8, 3), np.uint8))
    _save(tmp_path / "only.mask.png", np.full((8, 8), 255, np.uint8))
    with pytest.raises(InputImageError, match="no target"):
        folder_inputs(tmp_path, shots=1)
    _save(tmp_path / "ghost.mask.png", np.full((8, 8), 255, np.uint8))
    with pytest.raises(InputImageError, match="ghost"):
        folder_inputs(tmp_path, shots=1)


def test_scene_inputs_share_one_concept():
    inputs = scene_inputs(shots=2, targets=3, size=(96, 128))
    assert len(inputs.shots) == 2 and len(inputs.targets) == 3
    for image, mask in inputs.shots:
        assert image.shape == (96, 128, 3) and mask.shape == (96, 128) and mask.any()
    assert not any(np.array_equal(t, s) for t in inputs.targets for s, _ in inputs.shots)


# ---------------------------------------------------------------- synchronisation
def test_stage_clock_syncs_at_every_boundary():
    events = []
    clock = StageClock(lambda: events.append("sync"))
    for stage in ("debias", "matching"):
        with clock.stage(stage):
            events.append(stage)
    assert events == ["sync", "debias", "sync", "sync", "matching", "sync"]
    assert set(clock.ms) == {"debias", "matching"}


def test_device_synchronizer_waits_on_the_current_stream():
    calls = []
    stream = types.SimpleNamespace(synchronize=lambda: calls.append("stream"))
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: stream))
    device_synchronizer(fake_cupy)()
    assert calls == ["stream"]
    assert device_synchronizer(np) is no_sync


def test_passes_sync_around_every_timed_call_and_warm_up_untimed():
    events = []

    def segment_one(target):
        events.append(f"segment {target}")
        return np.zeros((2, 2), bool), {"backbone": 1.0}

    def synchronize():
        events.append("sync")

    warm_up(segment_one, ["a", "b"], 3)
    assert events == ["segment a", "segment b", "segment a"]  # cycles the targets, no timing
    events.clear()
    records = [measure_pass(segment_one, ["a", "b"], synchronize) for _ in range(2)]
    assert events == ["sync", "segment a", "sync", "sync", "segment b", "sync"] * 2
    times = pass_times(records)
    assert [len(p) for p in times.latencies_ms] == [2, 2] and len(times.stages_ms) == 4
    assert len(records[-1].masks) == 2


def test_sampling_synchronizer_reads_memory_after_the_sync():
    level = {"bytes": 100 * 1024 * 1024}
    order = []

    def used():
        order.append("sample")
        return level["bytes"]

    high_water = DeviceHighWater(used)
    synchronize = sampling(lambda: order.append("sync"), high_water)
    level["bytes"] += 300 * 1024 * 1024
    synchronize()
    level["bytes"] -= 200 * 1024 * 1024
    synchronize()
    assert order == ["sample", "sync", "sample", "sync", "sample"]
    assert high_water.peak_mb == pytest.approx(300.0)
    assert sampling(no_sync, None) is no_sync


def test_peak_rss_is_plausible():
    assert 10 < peak_rss_mb() < 64 * 1024


# ---------------------------------------------------------------- isolation
class Probe:
    """A side that reports where it runs (defined at module level: the spawned child imports it)."""

    def __init__(self, spec):
        self.spec = spec

    def where(self):
        import os

        return os.getpid(), self.spec

    def fail(self):
        raise InputImageError("bad image in the child")

    def die(self):
        import os

        os._exit(3)


def test_side_process_runs_calls_in_its_own_process():
    import os

    from insid3.benchmarks.isolation import SideFailedError, SideProcess

    with SideProcess(Probe, {"k": 1}) as side:
        pid, spec = side.call("where")
        assert pid != os.getpid() and spec == {"k": 1}
        with pytest.raises(InputImageError, match="bad image in the child"):
            side.call("fail")
        assert side.call("where")[0] == pid  # still alive after an exception: same process
        with pytest.raises(SideFailedError, match="died during die"):
            side.call("die")
