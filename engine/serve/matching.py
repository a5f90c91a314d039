"""Keypoint matching over HTTP: `POST /v1/match` and its registered reference images.

    POST   /v1/match/references        multipart: image -> 201 {"reference_id", "size": [H, W], "expires_at"}
    DELETE /v1/match/references/{id}   -> 204
    POST   /v1/match                   multipart: image (the target), points ("x,y;x,y" or JSON),
                                       reference_id | reference_image, debiased=true, svd_components
                                       -> 200 {"points": [[x, y], ...], "peak_similarity": [...],
                                               "size": [H, W], "debiased", "svd_components"}

A match reference is one image encoded once (engine.correspondence.EncodedImage), cached on
the device with the same LRU/TTL bounds as segmentation references, in its own store (so a
segmentation reference_id is unknown here, and the reverse). A reference_image uploaded with
the request is encoded for that request only. The target joins the same backbone batches as
/v1/segment targets (a `MatchItem` in the service's queue; the runner lets it decode itself).
Limits and errors are /v1/segment's: 400 bad points or image, 404 unknown reference, 413 over
a limit (at most MAX_POINTS points), 422 missing fields, 503 queue full or not ready.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from PIL import Image

from insid3.engine.runtime.correspondence import Correspondences, EncodedImage, MatchOptions, check_points, parse_points
from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import StageClock
from insid3.engine.serve.errors import BadRequestError, NotReadyError, PayloadTooLargeError, UnknownReferenceError
from insid3.engine.serve.references import CachedReference, ReferenceStore, new_reference_id
from insid3.engine.serve.runner import EngineRunner, failure_of
from insid3.engine.serve.settings import ServeSettings
from insid3.engine.serve.uploads import decode_upload

MAX_POINTS = 1024  # keypoints one request may match


@dataclass(frozen=True)
class MatchItem:
    """One /v1/match target waiting for the backbone, next to /v1/segment's TargetItems."""

    prepared: PreparedImage
    reference: EncodedImage
    points: np.ndarray  # (K, 2) float32, checked against the reference's size
    options: MatchOptions
    enqueued_at: float  # time.perf_counter() when it joined the queue

    def decode(self, segmenter: Segmenter, features: Any, clock: StageClock) -> Correspondences:
        """The engine thread's work on this target once the batch's features exist."""
        return segmenter.matcher.correspond(
            self.reference, self.points, features, self.prepared.original_size, self.options, clock
        )

    def result(self, found: Correspondences, timings_ms: dict[str, float], batch_size: int) -> "MatchResult":
        return MatchResult(found, timings_ms, batch_size)


@dataclass(frozen=True)
class MatchResult:
    correspondences: Correspondences
    timings_ms: dict[str, float]  # "queue", "backbone" (the whole batch's call), "debias", "matching"
    batch_size: int


Submit = Callable[[MatchItem], Awaitable[Any]]  # the service's queue: an outcome or a raised error


class Matching:
    """The matching half of a service: its reference images and the way into its batches.

    `resolve` and `register` are the two points a distributed service overrides (ray_app)."""

    def __init__(self, runner: EngineRunner, settings: ServeSettings, submit: Submit) -> None:
        self.runner, self.settings, self._submit = runner, settings, submit
        self.store = ReferenceStore(settings.max_references, settings.max_reference_bytes, settings.reference_ttl_s)
        self.headers: dict[str, str] = {}  # added to every /v1/match response (e.g. the Ray replica)

    async def encode(self, image: Image.Image) -> EncodedImage:
        return await self.runner.call(self.runner.segmenter.encode_image, image)

    async def register(self, image: Image.Image, image_bytes: bytes) -> CachedReference:
        return self.store.put(new_reference_id(), await self.encode(image))

    async def resolve(self, reference_id: str) -> EncodedImage:
        entry = self.store.get(reference_id)
        if entry is None:
            raise UnknownReferenceError(f"match reference {reference_id!r} is unknown or expired")
        return entry.reference

    async def delete(self, reference_id: str) -> bool:
        return self.store.delete(reference_id)

    async def match(
        self, reference: EncodedImage, points: np.ndarray, prepared: PreparedImage, options: MatchOptions
    ) -> MatchResult:
        outcome = await self._submit(MatchItem(prepared, reference, points, options, time.perf_counter()))
        error = failure_of(outcome)
        if error is not None:
            raise error
        return outcome


def _json_of(result: MatchResult, options: MatchOptions, s: int | None) -> dict:
    found = result.correspondences
    return {
        "points": found.points.tolist(), "peak_similarity": found.peak_similarity.tolist(),
        "size": list(found.target_size), "debiased": options.debiased, "svd_components": s,
    }


def install_match_routes(app: FastAPI, service: Any, timing_headers: Callable[[dict, int], dict]) -> None:
    """Add the routes above to `service`'s app; `service.matching` is its `Matching`."""
    settings: ServeSettings = service.settings

    def ready() -> Matching:
        if not service.is_ready():
            raise NotReadyError("the engine is not loaded")
        return service.matching

    @app.post("/v1/match/references", status_code=201)
    async def register_match_reference(
        image: Annotated[UploadFile, File(description="the reference image the keypoints will be on")],
    ) -> dict:
        matching = ready()
        data = await image.read()
        decoded = await run_in_threadpool(decode_upload, data, "image", settings.max_image_pixels)
        entry = await matching.register(decoded, data)
        return {"reference_id": entry.reference_id, "size": list(entry.reference.original_size),
                "expires_at": entry.expires_at_utc}

    @app.delete("/v1/match/references/{reference_id}", status_code=204)
    async def delete_match_reference(reference_id: str) -> Response:
        if not await ready().delete(reference_id):
            raise UnknownReferenceError(f"match reference {reference_id!r} is unknown or expired")
        return Response(status_code=204)

    @app.post("/v1/match")
    async def match(
        image: Annotated[UploadFile, File(description="the target image")],
        points: Annotated[str, Form(min_length=1, description='"x,y;x,y;..." or JSON [[x, y], ...]')],
        reference_id: Annotated[str | None, Form(min_length=1)] = None,
        reference_image: Annotated[UploadFile | None, File(description="a reference image for this request")] = None,
        debiased: Annotated[bool, Form()] = True,
        svd_components: Annotated[int | None, Form(ge=0)] = None,
    ) -> JSONResponse:
        matching = ready()
        if (reference_id is None) == (reference_image is None):
            raise BadRequestError("give exactly one of reference_id (POST /v1/match/references) or reference_image")
        started = time.perf_counter()
        options = MatchOptions(debiased=debiased, svd_components=svd_components)
        s = matching.runner.segmenter.matcher.components(options)
        pairs = parse_points(points, "points")
        if len(pairs) > MAX_POINTS:
            raise PayloadTooLargeError(f"points: {len(pairs)} keypoints exceed the limit of {MAX_POINTS}")
        data = await image.read()

        def decode_and_prepare() -> PreparedImage:
            return service.prepare(decode_upload(data, "image", settings.max_image_pixels))

        reference_ms = 0.0
        if reference_id is not None:
            reference = await matching.resolve(reference_id)
        else:
            upload = await reference_image.read()
            decoded = await run_in_threadpool(decode_upload, upload, "reference_image", settings.max_image_pixels)
            check_points(pairs, (decoded.height, decoded.width))  # before the backbone runs on it
            encoding = time.perf_counter()
            reference = await matching.encode(decoded)
            reference_ms = (time.perf_counter() - encoding) * 1e3
        checked = check_points(pairs, reference.original_size)
        prepared = await run_in_threadpool(decode_and_prepare)
        preprocess_ms = (time.perf_counter() - started) * 1e3 - reference_ms
        result = await matching.match(reference, checked, prepared, options)
        timings = {"preprocess": preprocess_ms, "reference": reference_ms, **result.timings_ms}
        service.metrics.observe_stages(timings)
        headers = {**timing_headers(timings, result.batch_size), **matching.headers}
        return JSONResponse(_json_of(result, options, s), headers=headers)
