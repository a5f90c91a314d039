"""Several concepts on one target over HTTP: `POST /v1/segment` with more than one reference_id,
or with format label-png or coco.

    POST /v1/segment   multipart: image, reference_id (repeat), name (one per reference_id,
                       optional: the ids by default), format=label-png|coco, instances=false,
                       min_area=0
        label-png -> 200 image/png: an indexed PNG (0 background, i the i-th reference_id) with
                     the PASCAL VOC palette (one byte: at most MAX_CONCEPTS reference_ids), and the
                     names in order in the X-Insid3-Labels header (a JSON list, ASCII-escaped)
                     and each concept's quality record and flags in X-Insid3-Quality
                     (a JSON object by name; docs/quality.md)
        coco      -> 200 a COCO instances document for this one image: images (file_name the
                     upload's name), annotations (compressed RLE, bbox, area, iscrowd 0; with
                     instances=true one per connected component of at least min_area pixels;
                     score: the concept's quality score), categories 1.. named after the names,
                     and X-Insid3-Quality as for label-png

The target joins the same backbone batches as single-concept targets (a `ConceptsItem` in the
service's queue decodes itself: engine/runtime/concepts.py, one clustering for every concept). Errors
are /v1/segment's: 400 names that do not pair with the ids or repeat, png/rle asked for
several concepts, or more than MAX_CONCEPTS reference_ids; 404 an unknown or expired reference_id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Response
from fastapi.responses import JSONResponse
from pydantic import StringConstraints

from insid3.engine.jobs.outputs.coco import coco_instances, target_record
from insid3.engine.jobs.outputs.files import encoded
from insid3.engine.jobs.outputs.label_png import label_image
from insid3.engine.runtime.concepts import ConceptsResult
from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.runtime.timing import StageClock
from insid3.engine.serve.errors import BadRequestError
from insid3.engine.serve.profiles import EngineSettings, answer_quality, judged_all

CONCEPT_FORMATS = ("label-png", "coco")
NonEmpty = Annotated[str, StringConstraints(min_length=1)]  # a form field that must not be empty (422)
MAX_CONCEPTS = 64  # reference_ids one request may name


@dataclass(frozen=True)
class ConceptsItem:
    """One multi-concept target waiting for the backbone, next to the single-concept TargetItems."""

    prepared: PreparedImage
    references: dict[str, Reference]
    enqueued_at: float  # time.perf_counter() when it joined the queue
    settings: EngineSettings | None = None  # every reference's profile settings (None: the server's)
    min_scores: dict[str, float | None] = field(default_factory=dict)  # by name, from their profiles

    def decode(self, segmenter: Segmenter, features: Any, clock: StageClock) -> ConceptsResult:
        return segmenter.decode_concepts(features, self.prepared.original_size, self.references, clock,
                                         pixels=self.prepared.pixels)  # the CRF refinement needs them

    def result(self, found: ConceptsResult, timings_ms: dict[str, float], batch_size: int) -> "ConceptsServed":
        return ConceptsServed(judged_all(found, self.min_scores), timings_ms, batch_size, self.min_scores)


@dataclass(frozen=True)
class ConceptsServed:
    result: ConceptsResult
    timings_ms: dict[str, float]  # "queue", "backbone" (the whole batch's call), then decode stages
    batch_size: int
    min_scores: dict[str, float | None] = field(default_factory=dict)  # by name: their profiles' thresholds


def named_references(reference_ids: list[str], names: list[str] | None, fmt: str) -> list[tuple[str, str]]:
    """(name, reference_id) pairs in label order, checked: one name per id, no name twice."""
    if fmt not in CONCEPT_FORMATS:
        raise BadRequestError(f"format {fmt} returns one mask: use label-png or coco for {len(reference_ids)} "
                              "reference_ids")
    if len(reference_ids) > MAX_CONCEPTS:
        raise BadRequestError(f"{len(reference_ids)} reference_ids exceed the limit of {MAX_CONCEPTS}")
    names = list(reference_ids) if not names else names
    if len(names) != len(reference_ids):
        raise BadRequestError(f"{len(names)} name field(s) for {len(reference_ids)} reference_id(s): "
                              "send one name per reference_id, or none")
    if len(set(names)) != len(names):
        raise BadRequestError(f"names must differ, got {', '.join(names)}")
    return list(zip(names, reference_ids))


@dataclass(frozen=True)
class ConceptsAnswer:
    """How to answer: format (label-png or coco), the upload's file name (COCO's file_name), and
    COCO's instances / min_area."""

    format: str
    file_name: str
    instances: bool = False
    min_area: int = 0

    def encode(self, result: ConceptsResult, min_scores: dict[str, float | None] | None = None) -> Response:
        """The label PNG or the COCO document of one target's concepts (min_scores: their profiles'
        thresholds by name, said in each quality record; the masks below them already emptied)."""
        thresholds = min_scores or {}
        records = {c.name: answer_quality(c.quality, thresholds.get(c.name)) for c in result if c.quality}
        judged = {"X-Insid3-Quality": json.dumps(records)}
        if self.format == "label-png":
            body = encoded(label_image(result.label_map(), len(result)), format="PNG")
            labels = json.dumps(list(result.names))  # ASCII-escaped: a valid header value
            return Response(body, media_type="image/png", headers={"X-Insid3-Labels": labels, **judged})
        record = target_record(self.file_name, result, instances=self.instances, min_area=self.min_area)
        return JSONResponse(coco_instances([record], result.names), headers=judged)
