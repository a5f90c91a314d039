"""Run one benchmark side in a fresh process of its own.

Why: ru_maxrss is a process-lifetime high-water mark, and torch, ONNX Runtime and OpenVINO each
keep their own thread pools and caches. Measuring both sides in one process would charge one
side's peak to the other and let their thread pools compete. A spawned process (not forked:
a fork inherits the parent's pages and libraries) starts from a bare interpreter; the two sides
run one after the other on the same machine, with the same images and weights.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from insid3.errors import Insid3Error

Spec = TypeVar("Spec")
Result = TypeVar("Result")


class SideFailedError(Insid3Error):
    """A benchmark side's process died (killed for memory, a crash in a native library)."""


def run_isolated(function: Callable[[Spec], Result], spec: Spec) -> Result:
    """`function(spec)` in a new spawned process; its exceptions re-raise here unchanged."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(function, spec).result()
        except BrokenProcessPool as exc:
            raise SideFailedError(
                f"the process running {function.__name__} died before finishing "
                "(out of memory, or a crash in a native library)"
            ) from exc
