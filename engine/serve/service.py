"""The contract between the HTTP app and whatever runs the engine behind it.

Two services implement it: `LocalService` (one process, our own dynamic batcher) and the Ray
Serve replica (`ray_app`, batching through `@serve.batch`). The HTTP app (`app.create_app`) is
the same for both: routes, validation, limits, error statuses, timing headers and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from insid3.engine.runtime.images import PreparedImage
from insid3.engine.serve.concepts import Concepts
from insid3.engine.serve.metrics import ServeMetrics
from insid3.engine.serve.references import CachedReference, ReferenceStore, new_reference_id
from insid3.engine.serve.runner import EngineRunner, SegmentResult
from insid3.engine.serve.settings import ServeSettings


@dataclass(frozen=True)
class ShotUpload:
    """One reference shot as uploaded (bytes, kept for re-encoding elsewhere) and decoded."""

    image_bytes: bytes
    mask_bytes: bytes
    image: Image.Image
    mask: Image.Image


@dataclass(frozen=True)
class Registered:
    reference_id: str
    shots: int
    expires_at_utc: str  # ISO 8601


@dataclass(frozen=True)
class Segmented:
    result: SegmentResult
    headers: dict[str, str] = field(default_factory=dict)  # service-specific, e.g. the Ray replica


async def encode_and_store(
    runner: EngineRunner, store: ReferenceStore, metrics: ServeMetrics, shots: list[ShotUpload]
) -> CachedReference:
    """Register: encode the shots on the engine thread and cache the Reference under a new id."""
    reference = await runner.call(runner.encode_reference, [(s.image, s.mask) for s in shots])
    entry = store.put(new_reference_id(), reference)
    metrics.reference_encodes.labels("register").inc()
    return entry


class Service(Protocol):
    settings: ServeSettings
    metrics: ServeMetrics
    concepts: Concepts  # /v1/segment with several concepts (serve/concepts.py)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def is_ready(self) -> bool: ...

    def describe(self) -> str: ...

    def prepare(self, image: Image.Image) -> PreparedImage:
        """Pre-process one decoded target (pure; runs on a request thread, not the engine's)."""
        ...

    async def register(self, shots: list[ShotUpload]) -> Registered: ...

    async def segment(self, reference_id: str, prepared: PreparedImage) -> Segmented: ...

    async def delete(self, reference_id: str) -> bool: ...
