"""Dynamic batching for the single-process server: one asyncio task forms batches.

Targets that arrive together go through the backbone as one batch of up to `max_batch`; the
oldest waiting target waits at most `max_wait_s` for others to join. While the engine runs a
batch, new arrivals queue up and form the next one, so under load batches fill without waiting.

The queue is bounded: `max_queue` counts targets admitted but not yet handed to the engine (the
batch being formed included). One more raises QueueFullError (the app answers 503 with
Retry-After) instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from insid3.engine.serve.errors import QueueFullError
from insid3.engine.serve.runner import QueueItem, failure_of

log = logging.getLogger("insid3.serve")

RunBatch = Callable[[Sequence[QueueItem]], Awaitable[list[Any]]]  # a result or an exception per item


@dataclass
class _Waiting:
    item: QueueItem
    future: asyncio.Future


class DynamicBatcher:
    def __init__(
        self,
        run_batch: RunBatch,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._on_batch = on_batch
        self._waiting: deque[_Waiting] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._batch_seconds = 0.0  # moving average of one batch's engine time, for Retry-After

    @property
    def depth(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="insid3-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for waiting in self._waiting:
            if not waiting.future.done():
                waiting.future.set_exception(asyncio.CancelledError("the server is shutting down"))
        self._waiting.clear()

    async def submit(self, item: QueueItem) -> Any:
        if len(self._waiting) >= self.max_queue:
            raise QueueFullError(
                f"the queue is full ({self.max_queue} targets waiting): retry later",
                retry_after_s=self.retry_after_s(),
            )
        waiting = _Waiting(item, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._arrived.set()
        return await waiting.future

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained: its batches at the recent pace, plus a wait."""
        batches = math.ceil(len(self._waiting) / self.max_batch)
        return max(1, math.ceil(batches * self._batch_seconds + self.max_wait_s))

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            started = time.perf_counter()
            try:
                outcomes = await self._run_batch([w.item for w in batch])
            except Exception as exc:  # never let one batch end the loop
                log.exception("a batch of %d failed", len(batch))
                outcomes = [exc] * len(batch)
            elapsed = time.perf_counter() - started
            self._batch_seconds = elapsed if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * elapsed
            self._on_batch(len(batch))
            for waiting, outcome in zip(batch, outcomes):
                if waiting.future.done():  # the client went away
                    continue
                error = failure_of(outcome)
                if error is not None:
                    waiting.future.set_exception(error)
                else:
                    waiting.future.set_result(outcome)

    async def _next_batch(self) -> list[_Waiting]:
        """Wait for a target, then for up to max_batch (or the oldest's deadline); pop them."""
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._waiting[0].item.enqueued_at + self.max_wait_s
            while len(self._waiting) < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            size = min(self.max_batch, len(self._waiting))
            batch = [self._waiting.popleft() for _ in range(size)]
            live = [w for w in batch if not w.future.done()]  # cancelled while waiting
            if live:
                return live
