"""`Service`: the engine behind the HTTP routes, one class whether one process or a Ray Serve
replica runs it. What differs between the two is an `Execution`:

    local.py     LocalExecution: our DynamicBatcher (batching.py), references in this process
    ray_app.py   the Ray Serve replica: @serve.batch, references shared through a registry actor

The routes (routes/*.py) see only the Service: validation, limits, error statuses, timing
headers and metrics are written once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from insid3.engine.runtime.correspondence import EncodedImage, MatchOptions
from insid3.engine.runtime.images import PreparedImage
from insid3.engine.serve.concepts import ConceptsItem, ConceptsServed
from insid3.engine.serve.errors import BadRequestError
from insid3.engine.serve.matching import MatchItem, MatchResult
from insid3.engine.serve.metrics import ServeMetrics
from insid3.engine.serve.profiles import ReferenceProfile, split, uploaded_profile
from insid3.engine.serve.references import CachedReference, ReferenceBook
from insid3.engine.serve.runner import EngineRunner, QueueItem, SegmentResult, TargetItem, failure_of
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
    profile: ReferenceProfile | None = None  # what its targets are segmented with (None: the server's settings)


@dataclass(frozen=True)
class Segmented:
    result: SegmentResult
    headers: dict[str, str] = field(default_factory=dict)  # the execution's, e.g. the Ray replica


class Execution(Protocol):
    """How a service runs: how its targets reach a backbone batch, where its references live."""

    references: ReferenceBook  # segmentation references (POST /v1/references)
    match_references: ReferenceBook  # match reference images (POST /v1/match/references)
    headers: dict[str, str]  # added to every engine answer (the Ray replica's id); {} locally
    label: str | None  # said after the engine in /readyz (the Ray replica); None locally

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, item: QueueItem) -> Any:
        """The item's outcome once its batch has run: a result, or the exception it raised."""
        ...

    def queue_depth(self) -> int: ...


class Service:
    def __init__(self, runner: EngineRunner, settings: ServeSettings, metrics: ServeMetrics,
                 execution: Execution) -> None:
        self.runner, self.settings, self.metrics, self.execution = runner, settings.validated(), metrics, execution
        self._ready = False
        metrics.queue_depth.set_function(execution.queue_depth)
        metrics.references.set_function(lambda: execution.references.stats()[0])
        metrics.reference_bytes.set_function(lambda: execution.references.stats()[1])

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.execution.start()
        self._ready = True

    async def stop(self) -> None:
        self._ready = False
        await self.execution.stop()
        self.runner.close()

    def is_ready(self) -> bool:
        return self._ready

    def describe(self) -> str:
        label = self.execution.label
        return self.runner.segmenter.describe() + (f"; {label}" if label else "")

    @property
    def headers(self) -> dict[str, str]:
        return self.execution.headers

    def prepare(self, image: Image.Image) -> PreparedImage:
        """Pre-process one decoded target (pure; runs on a request thread, not the engine's)."""
        return self.runner.prepare(image)

    # ------------------------------------------------------------------ segmentation
    def profile_of(self, data: bytes | str) -> ReferenceProfile:
        """A client's profile, checked against this server's bundle (400 in one line if not its)."""
        return uploaded_profile(data, self.runner.segmenter.bundle)

    async def register(self, shots: list[ShotUpload], profile: ReferenceProfile | None = None) -> Registered:
        """Encode the shots on the engine thread (under `profile`'s debias frame when given) and keep
        the reference, with its profile, under a new id."""
        encoded = await self.runner.call(self.runner.encode_reference, [(s.image, s.mask) for s in shots], profile)
        entry = await self.execution.references.add(encoded, [(s.image_bytes, s.mask_bytes) for s in shots])
        self.metrics.reference_encodes.labels("register").inc()
        return Registered(entry.reference_id, entry.shots, entry.expires_at_utc, profile)

    async def segment(self, reference_id: str, prepared: PreparedImage) -> Segmented:
        found, source = await self.execution.references.find(reference_id)
        reference, profile = split(found)
        min_score = self.settings.min_score if profile is None else profile.min_score
        result = await self._outcome(TargetItem(prepared, reference, time.perf_counter(), profile, min_score))
        where = {"X-Insid3-Reference-Source": source} if source else {}
        return Segmented(result, {**self.execution.headers, **where})

    async def segment_concepts(self, named_ids: list[tuple[str, str]], prepared: PreparedImage) -> ConceptsServed:
        """Several concepts on one target: (name, reference_id) pairs in label order. Their
        references must share one engine's settings (one clustering makes the label map): those of
        their profiles, or the server's; each keeps its own min_score (the server's without a profile)."""
        references, profiles = {}, {}
        for name, reference_id in named_ids:
            references[name], profiles[name] = split((await self.execution.references.find(reference_id))[0])
        settings = {name: self.runner.effective(None if p is None else p.settings) for name, p in profiles.items()}
        if len(set(settings.values())) > 1:
            ids = dict(named_ids)
            raise BadRequestError(
                "these references were registered with different settings and one label map needs one "
                "clustering: " + "; ".join(f"{ids[name]}: {value.describe()}" for name, value in settings.items())
                + ". Register them with the same profile, or segment them one at a time")
        chosen = next(iter(settings.values()))
        item = ConceptsItem(prepared, references, time.perf_counter(), settings=chosen,
                            min_scores={name: self.settings.min_score if p is None else p.min_score
                                        for name, p in profiles.items()})
        return await self._outcome(item)

    async def delete(self, reference_id: str) -> bool:
        return await self.execution.references.delete(reference_id)

    # ------------------------------------------------------------------ keypoint matching
    async def encode_image(self, image: Image.Image) -> EncodedImage:
        return await self.runner.call(self.runner.segmenter.encode_image, image)

    async def register_match_reference(self, image: Image.Image, image_bytes: bytes) -> CachedReference:
        return await self.execution.match_references.add(await self.encode_image(image), [(image_bytes, b"")])

    async def match_reference(self, reference_id: str) -> EncodedImage:
        return (await self.execution.match_references.find(reference_id))[0]

    async def delete_match_reference(self, reference_id: str) -> bool:
        return await self.execution.match_references.delete(reference_id)

    def svd_components(self, options: MatchOptions) -> int | None:
        """The s a match with these options removes (None: not debiased)."""
        return self.runner.segmenter.matcher.components(options)

    async def match(self, reference: EncodedImage, points: np.ndarray, prepared: PreparedImage,
                    options: MatchOptions) -> MatchResult:
        return await self._outcome(MatchItem(prepared, reference, points, options, time.perf_counter()))

    async def _outcome(self, item: QueueItem) -> Any:
        outcome = await self.execution.submit(item)
        error = failure_of(outcome)
        if error is not None:
            raise error
        return outcome
