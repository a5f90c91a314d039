"""One process owns the engine: `LocalExecution` feeds it through our own dynamic batcher.

    app = create_local_app(Segmenter.from_bundle(path), ServeSettings(max_batch=8))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import FastAPI
from PIL import Image

from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.serve.app import create_app
from insid3.engine.serve.batching import DynamicBatcher
from insid3.engine.serve.metrics import ServeMetrics
from insid3.engine.serve.references import LocalReferences, ReferenceStore
from insid3.engine.serve.runner import EngineRunner, QueueItem
from insid3.engine.serve.service import Service
from insid3.engine.serve.settings import ServeSettings


def _store(settings: ServeSettings) -> ReferenceStore:
    return ReferenceStore(settings.max_references, settings.max_reference_bytes, settings.reference_ttl_s)


class LocalExecution:
    """The Execution of one process (service.py): its batcher, its references in this process."""

    def __init__(self, runner: EngineRunner, settings: ServeSettings, metrics: ServeMetrics) -> None:
        self.runner, self.settings = runner, settings
        self.label: str | None = None
        self.headers: dict[str, str] = {}
        self.references = LocalReferences(_store(settings), "reference")
        self.match_references = LocalReferences(_store(settings), "match reference")
        self.batcher = DynamicBatcher(
            lambda items: runner.call(runner.run_batch, items),
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_s,
            max_queue=settings.max_queue,
            on_batch=metrics.batch_size.observe,
        )

    async def start(self) -> None:
        await self.runner.call(self._warm_up)
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    async def submit(self, item: QueueItem) -> Any:
        return await self.batcher.submit(item)

    def queue_depth(self) -> int:
        return self.batcher.depth

    def _warm_up(self) -> None:
        """One backbone call at the largest batch, so the first requests do not pay for it."""
        segmenter = self.runner.segmenter
        resolution = segmenter.bundle.metadata.resolution
        black = self.runner.prepare(Image.fromarray(np.zeros((resolution, resolution, 3), np.uint8)))
        # Straight to the backend: warm-up images are not targets and must not count as such.
        batch = min(self.settings.max_batch, segmenter.backend.max_batch or self.settings.max_batch)
        segmenter.backend.features(np.stack([black.pixels] * batch))


def local_service(segmenter: Segmenter, settings: ServeSettings) -> Service:
    """The Service of one process around `segmenter`."""
    settings = settings.validated()
    runner, metrics = EngineRunner(segmenter), ServeMetrics()
    return Service(runner, settings, metrics, LocalExecution(runner, settings, metrics))


def create_local_app(segmenter: Segmenter, settings: ServeSettings) -> FastAPI:
    return create_app(local_service(segmenter, settings))
