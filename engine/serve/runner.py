"""`EngineRunner`: the one thread that owns the Segmenter.

The engine is not thread-safe (one ONNX/TensorRT session, one CUDA stream), so every backbone
and kernel call runs on this runner's single-thread executor; request handlers only decode and
pre-process their own image (pure functions of the upload) before handing it over.

A batch of targets runs through the backbone as ONE call; the kernels (`Segmenter.decode`) then
run per target, each in its own try: an exception in one target fails that target alone. A
target of a profiled reference (profiles.py) is decoded by an engine of its profile's settings:
the same bundle and backend (so the same backbone features), its own debias frame, tau, merge
threshold and refinement; one such engine per distinct settings, the PROFILE_ENGINES most recent kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from PIL import Image

from insid3.engine.runtime.concepts import ConceptMask
from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.quality import MaskQuality
from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import StageClock
from insid3.engine.serve.profiles import EngineSettings, ProfiledReference, ReferenceProfile, judged

log = logging.getLogger("insid3.serve")
T = TypeVar("T")
PROFILE_ENGINES = 8  # engines of distinct profile settings kept; one more rebuilds the least recent when used


class QueueItem(Protocol):
    """What waits for a backbone batch: a pre-processed target that decodes itself once the batch's
    features exist (TargetItem here, ConceptsItem in concepts.py, MatchItem in matching.py)."""

    prepared: PreparedImage
    enqueued_at: float  # time.perf_counter() when it joined the queue
    settings: EngineSettings | None  # the engine that decodes it (None: the server's)

    def decode(self, segmenter: Segmenter, features: Any, clock: StageClock) -> Any:
        """The engine thread's work on this target (steps after the backbone)."""
        ...

    def result(self, decoded: Any, timings_ms: dict[str, float], batch_size: int) -> Any:
        """What its request receives."""
        ...


@dataclass(frozen=True)
class SegmentResult:
    mask: np.ndarray  # bool (H, W), the target's own size
    timings_ms: dict[str, float]  # "queue", "backbone" (the whole batch's call), then decode stages
    batch_size: int  # how many targets shared the backbone call
    quality: MaskQuality | None = None  # how far to trust the mask (engine/runtime/quality.py)
    min_score: float | None = None  # its reference's profile threshold (None: none; the mask is never emptied)


@dataclass(frozen=True)
class TargetItem:
    """One target of one reference waiting for the backbone, its reference already resolved."""

    prepared: PreparedImage
    reference: Reference
    enqueued_at: float  # time.perf_counter() when it joined the queue
    profile: ReferenceProfile | None = None  # the reference's profile (profiles.py)
    min_score: float | None = None  # below it the mask is emptied (its profile's, else the server's)

    @property
    def settings(self) -> EngineSettings | None:
        return None if self.profile is None else self.profile.settings

    def decode(self, segmenter: Segmenter, features: Any, clock: StageClock) -> ConceptMask:
        one = {"reference": self.reference}  # one reference: the concepts path with one entry
        return segmenter.decode_concepts(features, self.prepared.original_size, one, clock,
                                         pixels=self.prepared.pixels).concepts[0]

    def result(self, decoded: ConceptMask, timings_ms: dict[str, float], batch_size: int) -> SegmentResult:
        return SegmentResult(judged(decoded, self.min_score).mask, timings_ms, batch_size, decoded.quality,
                             self.min_score)


def failure_of(outcome: Any) -> BaseException | None:
    """The exception a queued item's outcome is, or None for a result."""
    return outcome if isinstance(outcome, BaseException) else None


class EngineRunner:
    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="insid3-engine")
        self.settings = EngineSettings(segmenter.hyperparameters, segmenter.refine)  # the server's own
        self._profile_engines: OrderedDict[EngineSettings, Segmenter] = OrderedDict()  # most recent last

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the engine thread without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    # ----------------------------------------------------------- any thread (pure)
    def prepare(self, image: Image.Image) -> PreparedImage:
        return self.segmenter.prepare(image)

    def effective(self, settings: EngineSettings | None) -> EngineSettings:
        """The settings an item of `settings` is decoded with (None: the server's)."""
        return self.settings if settings is None else settings

    # ----------------------------------------------------------- engine thread only
    def engine(self, settings: EngineSettings | None) -> Segmenter:
        """The Segmenter of these settings: the server's own, or one sharing its bundle and backend
        (built here, on the engine thread, since it puts its debias frame on the backend's device)."""
        if settings is None or settings == self.settings:
            return self.segmenter
        engine = self._profile_engines.pop(settings, None)
        if engine is None:
            engine = Segmenter(self.segmenter.bundle, self.segmenter.backend, settings.hyperparameters,
                               refine=settings.refine)
        self._profile_engines[settings] = engine
        while len(self._profile_engines) > PROFILE_ENGINES:
            self._profile_engines.popitem(last=False)
        return engine

    def encode_reference(self, shots: Sequence[tuple[Image.Image, Image.Image]],
                         profile: ReferenceProfile | None = None) -> Reference | ProfiledReference:
        """The shots encoded under the server's debias frame, or under `profile`'s (then kept with it)."""
        if profile is None:
            return self.segmenter.encode_reference(shots)
        return ProfiledReference(self.engine(profile.settings).encode_reference(shots), profile)

    def run_batch(self, items: Sequence[QueueItem]) -> list[Any]:
        """One backbone call for all items, then the kernels per item; one outcome per item."""
        started = time.perf_counter()
        batch_clock = StageClock(self.segmenter.backend.synchronize)
        try:
            with batch_clock.stage("backbone"):
                features = self.segmenter.encode([item.prepared for item in items])
        except Exception as exc:  # the backbone itself failed: every item of this batch fails
            log.exception("backbone failed on a batch of %d", len(items))
            return [exc] * len(items)
        outcomes: list[Any] = []  # a result or an exception per item
        for index, item in enumerate(items):
            clock = StageClock(self.segmenter.backend.synchronize)
            try:
                decoded = item.decode(self.engine(item.settings), features[index], clock)
            except Exception as exc:
                log.exception("decoding target %d of a batch of %d failed", index, len(items))
                outcomes.append(exc)
                continue
            timings = {"queue": (started - item.enqueued_at) * 1e3, **batch_clock.ms, **clock.ms}
            outcomes.append(item.result(decoded, timings, len(items)))
        return outcomes
