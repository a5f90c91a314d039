"""Each benchmark side lives in a fresh process of its own, driven call by call from here.

Why a process per side: ru_maxrss is a process-lifetime high-water mark, and torch, ONNX Runtime
and OpenVINO each keep their own thread pools, arenas and caches; in one process one side's peak
would be charged to the other. Spawned, not forked: a fork inherits the parent's pages.

Why driven call by call: this machine may be shared, and its load changes over minutes. The
driver interleaves the sides' measured passes (ours, authors', authors', ours, ...), so a change
of load falls on both sides alike instead of on whichever happened to run second.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
from collections.abc import Callable
from typing import Any

from insid3.errors import Insid3Error


class SideFailedError(Insid3Error):
    """A benchmark side's process died (killed for memory, a crash in a native library)."""


def _serve(connection, factory: Callable[[Any], Any], spec: Any) -> None:
    """Child process: build the side, then run the methods the parent names until told to stop."""
    # Ctrl-C reaches the whole process group: the parent handles it and ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    side, error = None, None
    try:
        side = factory(spec)
    except Exception as exc:  # reported on the first call, where the parent waits for an answer
        error = exc
    while True:
        message = connection.recv()
        if message is None:
            return
        method, args = message
        try:
            if error is not None:
                raise error
            reply = (True, getattr(side, method)(*args))
        except Exception as exc:
            reply = (False, exc)
        try:
            connection.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an unpicklable exception
            connection.send((False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]} ({exc})")))


class SideProcess:
    """`factory(spec)` built in a new spawned process; `call(name)` runs its method there."""

    def __init__(self, factory: Callable[[Any], Any], spec: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._name = getattr(factory, "__name__", "side")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, factory, spec), daemon=True)
        self._process.start()
        child.close()

    def call(self, method: str, *args: Any) -> Any:
        try:
            self._connection.send((method, args))
            ok, value = self._connection.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
            raise SideFailedError(
                f"the {self._name} process died during {method}() (exit code {self._process.exitcode}: "
                "out of memory, or a crash in a native library)"
            ) from exc
        if not ok:
            raise value
        return value

    def close(self) -> None:
        try:
            self._connection.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._connection.close()

    def __enter__(self) -> "SideProcess":
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        if exc_type is KeyboardInterrupt:  # do not wait for the pass in flight
            self._process.terminate()
            self._process.join()
            self._connection.close()
        else:
            self.close()
