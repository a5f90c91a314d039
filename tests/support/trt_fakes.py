"""Fakes of tensorrt and cupy, just enough for insid3.tensorrt's loader and runner.

The fake engine really reads its input from, and writes its output to, the device addresses
the runner binds (host memory stands in for device memory), so a wrong address, size or
order shows up as wrong features.
"""

from __future__ import annotations

import ctypes
import enum
import sys
import types

import numpy as np

from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1


def expected_features(pixel_values: np.ndarray, num_patches: int, embed_dim: int) -> np.ndarray:
    """What the fake engine computes: out[b, n, c] = sum(x[b]) * (n + 1) + c."""
    totals = pixel_values.reshape(len(pixel_values), -1).sum(axis=1, dtype=np.float32)
    n = np.arange(num_patches, dtype=np.float32)[:, None] + 1
    c = np.arange(embed_dim, dtype=np.float32)[None, :]
    return (totals[:, None, None] * n + c).astype(np.float32)


def _host_view(address: int, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * size).from_address(address)).reshape(shape)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.input_shape: tuple[int, ...] | None = None
        self.fail = False

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        assert name == self.engine.input_name
        self.input_shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        assert name == self.engine.output_name and self.input_shape is not None
        return (self.input_shape[0], self.engine.num_patches, self.engine.embed_dim)

    def set_tensor_address(self, name: str, address: int) -> None:
        self.addresses[name] = address

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert stream_handle == FakeStream.PTR
        if self.fail:
            return False
        pixels = _host_view(self.addresses[self.engine.input_name], self.input_shape)
        out_shape = self.get_tensor_shape(self.engine.output_name)
        out = _host_view(self.addresses[self.engine.output_name], out_shape)
        out[...] = expected_features(pixels, self.engine.num_patches, self.engine.embed_dim)
        return True


class FakeEngine:
    def __init__(self, *, input_name=INPUT_NAME, output_name=OUTPUT_NAME, resolution=32, num_patches=4,
                 embed_dim=8, max_batch=4, output_dtype=DataType.FLOAT) -> None:
        self.input_name, self.output_name = input_name, output_name
        self.resolution, self.num_patches, self.embed_dim = resolution, num_patches, embed_dim
        self.max_batch, self.output_dtype = max_batch, output_dtype
        self.contexts: list[FakeContext] = []

    # The engine lists its output first: the runner must go by mode, not by position.
    @property
    def num_io_tensors(self) -> int:
        return 2

    def get_tensor_name(self, index: int) -> str:
        return (self.output_name, self.input_name)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == self.input_name else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT if name == self.input_name else self.output_dtype

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name == self.input_name:
            return (-1, 3, self.resolution, self.resolution)
        return (-1, self.num_patches, self.embed_dim)

    def get_tensor_profile_shape(self, name: str, profile: int):
        shape = (3, self.resolution, self.resolution)
        return (1, *shape), (1, *shape), (self.max_batch, *shape)

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


def fake_tensorrt(engines: dict[bytes, FakeEngine | None]) -> types.ModuleType:
    """A `tensorrt` whose Runtime deserialises a file's bytes to engines[bytes] (None: fails)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.3.9"
    trt.TensorIOMode, trt.DataType = TensorIOMode, DataType

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, serialized: bytes):
            return engines.get(bytes(serialized))

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


class FakeDeviceArray(np.ndarray):
    """Host memory posing as CuPy device memory: `.data.ptr` and `.set(host, stream=)`."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def set(self, host: np.ndarray, stream=None) -> None:
        assert stream is not None, "the host-to-device copy must go on the runner's stream"
        assert host.shape == self.shape and host.dtype == self.dtype
        self[...] = host


class FakeStream:
    """Counts synchronisations; `record` / `wait_event` log the order of events in `log`; `with
    stream:` makes it the current stream of its fake cupy."""

    PTR = 0xC0DA

    def __init__(self, cupy=None, non_blocking: bool = False, name: str = "runner") -> None:
        self.ptr = self.PTR
        self.synchronized = 0
        self.name, self._cupy = name, cupy
        self.waited_for: list[str] = []

    def synchronize(self) -> None:
        self.synchronized += 1

    def record(self) -> str:
        return f"event on {self.name}"

    def wait_event(self, event: str) -> None:
        self.waited_for.append(event)

    def __enter__(self) -> "FakeStream":
        self._cupy.current.append(self)
        return self

    def __exit__(self, *exc_info) -> None:
        self._cupy.current.pop()


def fake_cupy() -> types.ModuleType:
    """A `cupy` that counts its allocations (`cupy.allocations`, with the stream current at each in
    `cupy.allocated_on`) and its streams; the current stream starts as the null stream."""
    cupy = types.ModuleType("cupy")
    cupy.float32 = np.float32
    cupy.allocations = []
    cupy.allocated_on = []
    cupy.streams = []
    cupy.current = [FakeStream(cupy, name="null")]

    def empty(size: int, dtype) -> FakeDeviceArray:
        cupy.allocations.append(size)
        cupy.allocated_on.append(cupy.current[-1].name)
        return np.empty(size, dtype=dtype).view(FakeDeviceArray)

    def stream(non_blocking: bool = False) -> FakeStream:
        cupy.streams.append(FakeStream(cupy, non_blocking))
        return cupy.streams[-1]

    cupy.empty = empty
    cupy.asnumpy = lambda array: np.array(array, copy=True).view(np.ndarray)
    cupy.cuda = types.SimpleNamespace(Stream=stream, get_current_stream=lambda: cupy.current[-1])
    return cupy


def installed_tensorrt(monkeypatch, version: str) -> None:
    """`import tensorrt` gives a module of this version and nothing else (what the version checks read)."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
