"""Peak memory of one benchmark side, measured honestly.

Each side runs in its own freshly spawned process (isolation.py), so:
- on the CPU the figure is that process's peak resident set (getrusage ru_maxrss, a lifetime
  high-water mark: in a fresh process it is this side's alone, interpreter and libraries
  included, which is what a user's process pays). The RSS before the model loads is reported
  beside it as the baseline;
- on a GPU it is device memory in use (cudaMemGetInfo: total - free, so library workspaces and
  allocator caches count, not only live tensors) minus the level before the model loaded,
  sampled after every synchronised call. CuPy's and torch's pools and ONNX Runtime's arena keep
  what they once allocated, so a sample after a call sees the peak any stage inside it reached.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1024 * 1024


def peak_rss_mb() -> float:
    """This process's lifetime peak RSS in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident set now (Linux /proc; falls back to the peak where /proc is absent)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError:
        return peak_rss_mb()
    return pages * resource.getpagesize() / MIB


class DeviceHighWater:
    """Highest device memory in use seen at the sample points, relative to a baseline."""

    def __init__(self, used_bytes: Callable[[], int]) -> None:
        self._used_bytes = used_bytes
        self.baseline = used_bytes()
        self.highest = self.baseline

    def sample(self) -> None:
        self.highest = max(self.highest, self._used_bytes())

    @property
    def peak_mb(self) -> float:
        return (self.highest - self.baseline) / MIB


def sampling(synchronize: Callable[[], None], high_water: DeviceHighWater | None) -> Callable[[], None]:
    """`synchronize`, then a memory sample: device memory is read where the work is done."""
    if high_water is None:
        return synchronize

    def synchronize_and_sample() -> None:
        synchronize()
        high_water.sample()

    return synchronize_and_sample


@dataclass(frozen=True)
class MemoryReport:
    peak_mb: float
    kind: str  # what peak_mb is: "process peak RSS" or "device memory high-water"
    baseline_mb: float  # RSS before the model loaded (CPU), or 0 (device figure is already a delta)
    host_peak_rss_mb: float

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "baseline_mb": self.baseline_mb,
            "host_peak_rss_mb": self.host_peak_rss_mb,
        }


def memory_report(high_water: DeviceHighWater | None, on_device: bool, rss_baseline_mb: float) -> MemoryReport:
    host = peak_rss_mb()
    if on_device and high_water is not None:
        return MemoryReport(high_water.peak_mb, "device memory high-water (cudaMemGetInfo) above load baseline", 0.0, host)
    return MemoryReport(host, "peak RSS of this side's own process (ru_maxrss)", rss_baseline_mb, host)


def cupy_high_water() -> DeviceHighWater | None:
    """Device sampler through CuPy, or None where there is no CUDA device (the CPU path)."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no cupy, no driver: nothing on a device to measure
        return None

    def used() -> int:
        free, total = cupy.cuda.runtime.memGetInfo()
        return int(total - free)

    return DeviceHighWater(used)


def torch_high_water(device: str) -> DeviceHighWater | None:
    """Device sampler through torch for the authors' way on a GPU; None on the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    def used() -> int:
        free, total = torch.cuda.mem_get_info(device)
        return int(total - free)

    return DeviceHighWater(used)
