"""POST /v1/segment: one target against one registered reference, or against several (concepts).

    multipart: reference_id, image, format=png|rle
        -> 200 image/png (mode L, 0/255, the target's size), its quality record and flags in the
           X-Insid3-Quality header (JSON) and its score in X-Insid3-Score,
           or {"size": [H, W], "counts": "<COCO compressed RLE>", "quality": {...}};
           a reference registered with a profile (profiles.py) is segmented with its settings, and
           below its min_score the mask is empty and the record says "absent": true
    several reference_id (+ name), format=label-png|coco
        -> a label PNG or COCO instances (concepts.py)

Per-stage timings (ms) come back in one `Server-Timing` header and as `X-Insid3-Timing-<Stage>-Ms`
headers; `backbone` is the whole batch's call, shared by `X-Insid3-Batch-Size` targets.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.rle import encode_rle
from insid3.engine.serve.concepts import CONCEPT_FORMATS, ConceptsAnswer, NonEmpty, named_references
from insid3.engine.serve.deps import ReadyService
from insid3.engine.serve.profiles import answer_quality
from insid3.engine.serve.responses import encode_png, timing_headers
from insid3.engine.serve.service import Service
from insid3.engine.serve.uploads import decode_upload

router = APIRouter()


@router.post("/v1/segment")
async def segment(
    service: ReadyService,
    reference_id: Annotated[list[NonEmpty], Form(description="repeat for several concepts (serve/concepts.py)")],
    image: Annotated[UploadFile, File(description="the target image")],
    format: Annotated[Literal["png", "rle", "label-png", "coco"], Form()] = "png",
    name: Annotated[list[NonEmpty] | None, Form(description="one per reference_id: the concepts' names")] = None,
    instances: Annotated[bool, Form(description="coco: one annotation per connected component")] = False,
    min_area: Annotated[int, Form(ge=0, description="coco with instances: smaller components dropped")] = 0,
) -> Response:
    several = len(reference_id) > 1 or format in CONCEPT_FORMATS
    named_ids = named_references(reference_id, name, format) if several else None
    started = time.perf_counter()
    data = await image.read()

    def decode_and_prepare() -> PreparedImage:
        return service.prepare(decode_upload(data, "image", service.settings.max_image_pixels))

    prepared = await run_in_threadpool(decode_and_prepare)
    preprocess_ms = (time.perf_counter() - started) * 1e3
    if named_ids is not None:
        answer = ConceptsAnswer(format, image.filename or "image", instances, min_area)
        return await _concepts(service, named_ids, prepared, answer, preprocess_ms)
    segmented = await service.segment(reference_id[0], prepared)
    result = segmented.result
    started = time.perf_counter()
    quality = answer_quality(result.quality, result.min_score) if result.quality is not None else None
    if format == "png":
        body = await run_in_threadpool(encode_png, result.mask)
        judged = {"X-Insid3-Quality": json.dumps(quality), "X-Insid3-Score": repr(quality["score"])} if quality else {}
        response: Response = Response(body, media_type="image/png", headers=judged)
    else:
        rle = await run_in_threadpool(encode_rle, result.mask)
        response = JSONResponse({**rle, "quality": quality} if quality else rle)
    timings = {"preprocess": preprocess_ms, **result.timings_ms, "encode": (time.perf_counter() - started) * 1e3}
    service.metrics.observe_stages(timings)
    response.headers.update({**timing_headers(timings, result.batch_size), **segmented.headers})
    return response


async def _concepts(service: Service, named_ids: list[tuple[str, str]], prepared: PreparedImage,
                    answer: ConceptsAnswer, preprocess_ms: float) -> Response:
    """The multi-concept answer, its timings in the same headers as a single mask's."""
    served = await service.segment_concepts(named_ids, prepared)
    started = time.perf_counter()
    response = await run_in_threadpool(answer.encode, served.result, served.min_scores)
    timings = {"preprocess": preprocess_ms, **served.timings_ms, "encode": (time.perf_counter() - started) * 1e3}
    service.metrics.observe_stages(timings)
    response.headers.update({**timing_headers(timings, served.batch_size), **service.headers})
    return response
