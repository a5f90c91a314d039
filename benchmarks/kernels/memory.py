"""Peak memory of one clustering per method, each in a fresh process (C allocations included)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from insid3.benchmarks.kernels.shapes import TAU, Shape, features_for
from insid3.benchmarks.writer import table
from insid3.kernels import average_linkage_clusters

METHODS = ("sklearn", "chain", "reciprocal")
# Imported in the child before its baseline, so module loading is not counted against a method.
WARM_IMPORTS = ("numpy", "scipy", "sklearn.cluster", "torch", "insid3.authors_way", "insid3.kernels.linkage_chain")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def memory_probe(method: str, path: str) -> None:
    """Child process: load the features, then print the peak RSS growth (bytes) of one clustering.

    Uses VmHWM (the peak of this process's own address space) after resetting it through
    /proc/self/clear_refs; getrusage's ru_maxrss would include the parent's RSS at fork time.
    "sklearn" is the authors' way (insid3.authors_way.cluster: torch's distances, then sklearn).
    """
    from insid3.benchmarks.kernels.clustering import authors_from_features

    features = np.load(path)
    if method != "sklearn":  # load the Numba kernels first: their code is not the method's data
        average_linkage_clusters(features[:8], TAU, method=method)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    baseline = _status_kib("VmRSS")
    if method == "sklearn":
        authors_from_features(features)
    else:
        average_linkage_clusters(features, TAU, method=method)
    print((_status_kib("VmHWM") - baseline) * 1024)


def bench_memory(shape: Shape) -> list[str]:
    features = features_for(shape)
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "features.npy")
        np.save(path, features)
        for method in METHODS:
            code = (f"import {', '.join(WARM_IMPORTS)}; "
                    f"from insid3.benchmarks.kernels.memory import memory_probe; memory_probe({method!r}, {path!r})")
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            peaks.append((method, f"{int(out.stdout.split()[-1]) / 2**20:.0f}"))
    return [f"### Peak memory of one clustering, {shape.name} (RSS growth over the loaded features)", "",
            *table(("method", "peak (MiB)"), peaks, "lr"), ""]
