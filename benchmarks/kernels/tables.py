"""`insid3 bench kernels`: every table of the kernel benchmark, as markdown."""

from __future__ import annotations

from dataclasses import dataclass

from insid3.benchmarks.kernels.clustering import bench_clustering
from insid3.benchmarks.kernels.memory import bench_memory
from insid3.benchmarks.kernels.shapes import VIT_L_1024, VIT_S_768
from insid3.benchmarks.kernels.steps import bench_steps
from insid3.errors import SettingsError


@dataclass(frozen=True, kw_only=True)
class KernelBenchSettings:
    quick: bool = False
    repeats: int = 5


def run(settings: KernelBenchSettings) -> int:
    if settings.repeats < 5:
        raise SettingsError("--repeats must be >= 5 (medians of at least five runs)")
    shapes = [VIT_S_768] if settings.quick else [VIT_L_1024, VIT_S_768]
    print(f"# insid3 kernels benchmark ({'quick' if settings.quick else 'full'}, median of {settings.repeats})\n")
    for dense in (False, True):
        for shape in shapes:
            rows, _ = bench_clustering(shape, settings.repeats, dense=dense)
            print("\n".join(rows), flush=True)
    for shape in shapes:
        print("\n".join(bench_memory(shape)), flush=True)
    for shape in shapes:
        for shots in ((1,) if settings.quick else (1, 5)):
            print("\n".join(bench_steps(shape, shots, settings.repeats)), flush=True)
    return 0
