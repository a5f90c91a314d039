"""`LocalService`: one process owns the engine; our own dynamic batcher feeds it.

    app = create_local_app(Segmenter.from_bundle(path), ServeSettings(max_batch=8))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import time

import numpy as np
from fastapi import FastAPI
from PIL import Image

from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.serve.app import create_app
from insid3.engine.serve.batching import DynamicBatcher
from insid3.engine.serve.concepts import Concepts
from insid3.engine.serve.errors import UnknownReferenceError
from insid3.engine.serve.matching import Matching
from insid3.engine.serve.metrics import ServeMetrics
from insid3.engine.serve.references import ReferenceStore
from insid3.engine.serve.runner import EngineRunner, TargetItem
from insid3.engine.serve.service import Registered, Segmented, ShotUpload, encode_and_store
from insid3.engine.serve.settings import ServeSettings


class LocalService:
    def __init__(self, segmenter: Segmenter, settings: ServeSettings) -> None:
        self.settings = settings.validated()
        self.metrics = ServeMetrics()
        self.runner = EngineRunner(segmenter)
        self.store = ReferenceStore(settings.max_references, settings.max_reference_bytes, settings.reference_ttl_s)
        self.batcher = DynamicBatcher(
            lambda items: self.runner.call(self.runner.run_batch, items),
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_s,
            max_queue=settings.max_queue,
            on_batch=self.metrics.batch_size.observe,
        )
        self.matching = Matching(self.runner, self.settings, self.batcher.submit)  # POST /v1/match
        self.concepts = Concepts(self._reference, self.batcher.submit)  # /v1/segment, several concepts
        self._ready = False
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth)
        self.metrics.references.set_function(lambda: self.store.stats()[0])
        self.metrics.reference_bytes.set_function(lambda: self.store.stats()[1])

    async def start(self) -> None:
        await self.runner.call(self._warm_up)
        self.batcher.start()
        self._ready = True

    async def stop(self) -> None:
        self._ready = False
        await self.batcher.stop()
        self.runner.close()

    def _warm_up(self) -> None:
        """One backbone call at the largest batch, so the first requests do not pay for it."""
        resolution = self.runner.segmenter.bundle.metadata.resolution
        black = self.runner.prepare(Image.fromarray(np.zeros((resolution, resolution, 3), np.uint8)))
        # Straight to the backend: warm-up images are not targets and must not count as such.
        batch = min(self.settings.max_batch, self.runner.segmenter.backend.max_batch or self.settings.max_batch)
        self.runner.segmenter.backend.features(np.stack([black.pixels] * batch))

    def is_ready(self) -> bool:
        return self._ready

    def describe(self) -> str:
        return self.runner.segmenter.describe()

    def prepare(self, image: Image.Image) -> PreparedImage:
        return self.runner.prepare(image)

    async def register(self, shots: list[ShotUpload]) -> Registered:
        entry = await encode_and_store(self.runner, self.store, self.metrics, shots)
        return Registered(entry.reference_id, entry.shots, entry.expires_at_utc)

    async def _reference(self, reference_id: str) -> Reference:
        entry = self.store.get(reference_id)
        if entry is None:
            raise UnknownReferenceError(f"reference {reference_id!r} is unknown or expired")
        return entry.reference

    async def segment(self, reference_id: str, prepared: PreparedImage) -> Segmented:
        reference = await self._reference(reference_id)
        item = TargetItem(prepared=prepared, reference=reference, enqueued_at=time.perf_counter())
        return Segmented(await self.batcher.submit(item))

    async def delete(self, reference_id: str) -> bool:
        return self.store.delete(reference_id)


def create_local_app(segmenter: Segmenter, settings: ServeSettings) -> FastAPI:
    return create_app(LocalService(segmenter, settings))
