"""`python -m insid3.benchmarks.kernels`: every table of the kernel benchmark, as markdown."""

from __future__ import annotations

import argparse
import sys

from insid3.benchmarks.kernels import __doc__ as DESCRIPTION
from insid3.benchmarks.kernels.clustering import bench_clustering
from insid3.benchmarks.kernels.memory import bench_memory
from insid3.benchmarks.kernels.shapes import VIT_L_1024, VIT_S_768
from insid3.benchmarks.kernels.steps import bench_steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m insid3.benchmarks.kernels", description=DESCRIPTION.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ViT-S 768px only")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (>= 5; median reported)")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 (medians of at least five runs)")
    shapes = [VIT_S_768] if args.quick else [VIT_L_1024, VIT_S_768]
    print(f"# insid3 kernels benchmark ({'quick' if args.quick else 'full'}, median of {args.repeats})\n")
    for dense in (False, True):
        for shape in shapes:
            rows, _ = bench_clustering(shape, args.repeats, dense=dense)
            print("\n".join(rows), flush=True)
    for shape in shapes:
        print("\n".join(bench_memory(shape)), flush=True)
    for shape in shapes:
        for shots in ((1,) if args.quick else (1, 5)):
            print("\n".join(bench_steps(shape, shots, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
