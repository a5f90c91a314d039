"""Run a TensorRT engine on CuPy device buffers: one stream, buffers kept between calls.

In the style of Polygraphy's runners: `loader.load_engine` deserialises, `TensorRtRunner`
owns one execution context, one CuPy stream and persistent device buffers (grown only when a
larger batch comes). `infer` validates what it is given against what the engine itself says
(its tensor names, shapes and optimisation profile), and `_infer_impl` runs it.

Lifecycle, after Polygraphy's runners: the runner holds its context, stream and buffers from
construction until `close()` (or the end of a `with` block); closing twice is harmless, `infer`
after it is a RuntimeError. Streams follow the rule of insid3.engine.runtime.backends.base: the
buffers are allocated with the runner's stream current, the stream waits for the caller's queued
work before writing, and is synchronised before `infer` returns.

Buffers and the stream are CuPy's only (the export used to use torch.cuda where present): the
same runner serves the export's parity check and the runtime backend, neither needs torch.
Written from TensorRT 10's Python API (named I/O tensors, set_input_shape, set_tensor_address,
execute_async_v3) and CuPy's (Stream, ndarray.set); unit-tested with fakes of both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from insid3.errors import BackendUnavailableError, BundleError, InputImageError
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME
from insid3.tensorrt.loader import LoadedEngine, load_engine


@dataclass(frozen=True)
class EngineIO:
    """The engine's one input and one output, as the engine itself declares them."""

    input_name: str
    output_name: str
    input_shape: tuple[int, ...]  # -1 where the engine is dynamic (the batch)
    min_batch: int  # the batch range of optimisation profile 0
    max_batch: int


def _one_tensor(source: str, role: str, names: list[str], expected: str) -> str:
    if names != [expected]:
        raise BundleError(f"{source}: the engine's {role} tensors are {names}, expected [{expected!r}]")
    return expected


def read_engine_io(engine: Any, trt: ModuleType, source: str) -> EngineIO:
    """Names, modes and dtypes read from `engine`, checked against insid3.format.tensors."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    by_mode = {
        role: [n for n in names if engine.get_tensor_mode(n) == mode]
        for role, mode in (("input", trt.TensorIOMode.INPUT), ("output", trt.TensorIOMode.OUTPUT))
    }
    input_name = _one_tensor(source, "input", by_mode["input"], INPUT_NAME)
    output_name = _one_tensor(source, "output", by_mode["output"], OUTPUT_NAME)
    for name in (input_name, output_name):
        dtype = engine.get_tensor_dtype(name)
        if dtype != trt.DataType.FLOAT:
            raise BundleError(f"{source}: tensor {name!r} is {dtype}, expected float32 (DataType.FLOAT)")
    min_shape, _, max_shape = engine.get_tensor_profile_shape(input_name, 0)
    return EngineIO(
        input_name=input_name,
        output_name=output_name,
        input_shape=tuple(int(d) for d in engine.get_tensor_shape(input_name)),
        min_batch=int(min_shape[0]),
        max_batch=int(max_shape[0]),
    )


def check_input(pixel_values: np.ndarray, io: EngineIO) -> None:
    """InputImageError naming the tensor unless float32 and of the engine's rank and sizes;
    ValueError when the batch is outside the engine's profile."""
    expected = ("B", *io.input_shape[1:])
    fits = (
        isinstance(pixel_values, np.ndarray)
        and pixel_values.dtype == np.float32
        and pixel_values.ndim == len(io.input_shape)
        and all(want in (-1, got) for want, got in zip(io.input_shape[1:], pixel_values.shape[1:]))
    )
    if not fits:
        got = f"{getattr(pixel_values, 'dtype', type(pixel_values).__name__)} {getattr(pixel_values, 'shape', '')}"
        raise InputImageError(f"{io.input_name}: expected float32 {expected}, got {got.strip()}")
    batch = pixel_values.shape[0]
    if not io.min_batch <= batch <= io.max_batch:
        raise ValueError(
            f"{io.input_name}: batch {batch} is outside the engine's profile ({io.min_batch} to {io.max_batch})"
        )


class DeviceBuffer:
    """One float32 allocation in `xp`, reused by every call and grown only for a larger one."""

    def __init__(self, xp: ModuleType) -> None:
        self._xp = xp
        self._flat: Any = None

    @property
    def capacity(self) -> int:
        return 0 if self._flat is None else int(self._flat.size)

    def view(self, shape: tuple[int, ...]) -> Any:
        """A C-contiguous `shape` view of the buffer's start (its contents are left as they are).
        Allocated on the current stream's blocks: call it with the writing stream current."""
        size = math.prod(shape)
        if size > self.capacity:
            self._flat = None  # the smaller block goes back to the pool first
            self._flat = self._xp.empty(size, dtype=self._xp.float32)
        return self._flat[:size].reshape(shape)

    def release(self) -> None:
        self._flat = None


class TensorRtRunner:
    """One engine, one execution context, one CuPy stream, persistent input/output buffers."""

    def __init__(self, loaded: LoadedEngine) -> None:
        import cupy
        import tensorrt as trt

        self.source = loaded.path.name
        self.io = read_engine_io(loaded.engine, trt, self.source)
        self._loaded = loaded  # the engine must outlive its context
        self._context = loaded.engine.create_execution_context()
        if self._context is None:
            raise BackendUnavailableError(f"TensorRT cannot create an execution context for {self.source}")
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._input = DeviceBuffer(cupy)
        self._output = DeviceBuffer(cupy)

    @classmethod
    def from_file(cls, path: Path) -> TensorRtRunner:
        return cls(load_engine(path))

    @property
    def closed(self) -> bool:
        return self._context is None

    def close(self) -> None:
        """Wait for the stream, then let go of the context (before its engine), buffers and stream."""
        if self._context is None:
            return
        self._stream.synchronize()
        self._context = None
        self._input.release()
        self._output.release()
        self._stream = self._loaded = None

    def __enter__(self) -> TensorRtRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def max_batch(self) -> int:
        return self.io.max_batch

    def infer(self, pixel_values: np.ndarray) -> Any:
        """(B, 3, R, R) float32 host pixels -> (B, N, C) float32 CuPy features.

        The result is a view of the runner's output buffer, complete when this returns and
        overwritten by the next call: copy it to keep it.
        """
        if self._context is None:
            raise RuntimeError(f"{self.source}: the TensorRT runner is closed (infer after close())")
        check_input(pixel_values, self.io)
        return self._infer_impl(np.ascontiguousarray(pixel_values))

    def _infer_impl(self, pixel_values: np.ndarray) -> Any:
        io, context = self.io, self._context
        if not context.set_input_shape(io.input_name, tuple(pixel_values.shape)):
            raise RuntimeError(
                f"{self.source}: TensorRT refused input shape {pixel_values.shape} for {io.input_name!r}"
            )
        import cupy

        stream = self._stream
        stream.wait_event(cupy.cuda.get_current_stream().record())  # after the caller's queued work
        with stream:  # the buffers' blocks come from the writing stream's own pool
            device_in = self._input.view(tuple(pixel_values.shape))
            device_out = self._output.view(tuple(int(d) for d in context.get_tensor_shape(io.output_name)))
        device_in.set(pixel_values, stream=stream)  # ordered before the engine on one stream
        context.set_tensor_address(io.input_name, device_in.data.ptr)
        context.set_tensor_address(io.output_name, device_out.data.ptr)
        if not context.execute_async_v3(self._stream.ptr):
            raise RuntimeError(f"{self.source}: TensorRT execute_async_v3 failed")
        self._stream.synchronize()  # callers read the output from other streams
        return device_out
