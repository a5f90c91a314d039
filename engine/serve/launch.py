"""Start `insid3-serve` as a child process on a free loopback port and wait until it is ready.

Used by the load generator (benchmarks/loadgen.py) and the tests: both talk to a real server
over real HTTP, and both must stop it however they end.

    with running_server(["--bundle", str(bundle), "--max-batch", "8"]) as server:
        httpx.get(f"{server.url}/readyz")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class ServerProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(server: ServerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"insid3-serve exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"insid3-serve not ready after {timeout_s:.0f} s:\n{server.log_tail()}")


def stop(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL to the process group this module created."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running_server(args: list[str], log_path: Path, ready_timeout_s: float = 60.0) -> Iterator[ServerProcess]:
    """`insid3-serve --host 127.0.0.1 --port <free> *args`, ready on entry, stopped on exit."""
    port = free_port()
    command = [sys.executable, "-m", "insid3.engine.cli.serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log_path, "wb") as log:
        # Own session: a hard stop can reach everything it started (uvicorn, or Ray's daemons).
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = ServerProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        wait_ready(server, ready_timeout_s)
        yield server
    finally:
        stop(process)
