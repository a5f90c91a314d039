"""Keypoint matching over HTTP (routes/match.py): `POST /v1/match` and its registered reference images.

    POST   /v1/match/references        multipart: image -> 201 {"reference_id", "size": [H, W], "expires_at"}
    DELETE /v1/match/references/{id}   -> 204
    POST   /v1/match                   multipart: image (the target), points ("x,y;x,y" or JSON),
                                       reference_id | reference_image, debiased=true, svd_components
                                       -> 200 {"points": [[x, y], ...], "peak_similarity": [...],
                                               "size": [H, W], "debiased", "svd_components"}

A match reference is one image encoded once (engine.correspondence.EncodedImage), cached on
the device with the same LRU/TTL bounds as segmentation references, in its own ReferenceBook (so a
segmentation reference_id is unknown here, and the reverse). A reference_image uploaded with
the request is encoded for that request only. The target joins the same backbone batches as
/v1/segment targets (a `MatchItem` in the service's queue; the runner lets it decode itself).
Limits and errors are /v1/segment's: 400 bad points or image, 404 unknown reference, 413 over
a limit (at most MAX_POINTS points), 422 missing fields, 503 queue full or not ready.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from insid3.engine.runtime.correspondence import Correspondences, EncodedImage, MatchOptions
from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import StageClock

MAX_POINTS = 1024  # keypoints one request may match


@dataclass(frozen=True)
class MatchItem:
    """One /v1/match target waiting for the backbone, next to /v1/segment's TargetItems."""

    prepared: PreparedImage
    reference: EncodedImage
    points: np.ndarray  # (K, 2) float32, checked against the reference's size
    options: MatchOptions
    enqueued_at: float  # time.perf_counter() when it joined the queue
    settings: None = None  # matched by the server's own engine (runner.QueueItem)

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


def match_json(result: MatchResult, options: MatchOptions, s: int | None) -> dict:
    """The body of a /v1/match answer."""
    found = result.correspondences
    return {
        "points": found.points.tolist(), "peak_similarity": found.peak_similarity.tolist(),
        "size": list(found.target_size), "debiased": options.debiased, "svd_components": s,
    }
