"""Keypoint matching (the API and its limits: serve/matching.py).

    POST   /v1/match/references        multipart: image -> 201 {"reference_id", "size": [H, W], "expires_at"}
    DELETE /v1/match/references/{id}   -> 204
    POST   /v1/match                   multipart: image, points, reference_id | reference_image, ...
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from insid3.engine.runtime.correspondence import MatchOptions, check_points, parse_points
from insid3.engine.runtime.images import PreparedImage
from insid3.engine.serve.deps import ReadyService
from insid3.engine.serve.errors import BadRequestError, PayloadTooLargeError, UnknownReferenceError
from insid3.engine.serve.matching import MAX_POINTS, match_json
from insid3.engine.serve.responses import timing_headers
from insid3.engine.serve.uploads import decode_upload, read_upload

router = APIRouter()


@router.post("/v1/match/references", status_code=201)
async def register_match_reference(
    service: ReadyService,
    image: Annotated[UploadFile, File(description="the reference image the keypoints will be on")],
) -> dict:
    data, decoded = await read_upload(image, "image", service.settings.max_image_pixels)
    entry = await service.register_match_reference(decoded, data)
    return {"reference_id": entry.reference_id, "size": list(entry.reference.original_size),
            "expires_at": entry.expires_at_utc}


@router.delete("/v1/match/references/{reference_id}", status_code=204)
async def delete_match_reference(service: ReadyService, reference_id: str) -> Response:
    if not await service.delete_match_reference(reference_id):
        raise UnknownReferenceError(f"match reference {reference_id!r} is unknown or expired")
    return Response(status_code=204)


@router.post("/v1/match")
async def match(
    service: ReadyService,
    image: Annotated[UploadFile, File(description="the target image")],
    points: Annotated[str, Form(min_length=1, description='"x,y;x,y;..." or JSON [[x, y], ...]')],
    reference_id: Annotated[str | None, Form(min_length=1)] = None,
    reference_image: Annotated[UploadFile | None, File(description="a reference image for this request")] = None,
    debiased: Annotated[bool, Form()] = True,
    svd_components: Annotated[int | None, Form(ge=0)] = None,
) -> JSONResponse:
    max_pixels = service.settings.max_image_pixels
    if (reference_id is None) == (reference_image is None):
        raise BadRequestError("give exactly one of reference_id (POST /v1/match/references) or reference_image")
    started = time.perf_counter()
    options = MatchOptions(debiased=debiased, svd_components=svd_components)
    s = service.svd_components(options)
    pairs = parse_points(points, "points")
    if len(pairs) > MAX_POINTS:
        raise PayloadTooLargeError(f"points: {len(pairs)} keypoints exceed the limit of {MAX_POINTS}")
    data = await image.read()

    def decode_and_prepare() -> PreparedImage:
        return service.prepare(decode_upload(data, "image", max_pixels))

    reference_ms = 0.0
    if reference_id is not None:
        reference = await service.match_reference(reference_id)
    else:
        _, decoded = await read_upload(reference_image, "reference_image", max_pixels)
        check_points(pairs, (decoded.height, decoded.width))  # before the backbone runs on it
        encoding = time.perf_counter()
        reference = await service.encode_image(decoded)
        reference_ms = (time.perf_counter() - encoding) * 1e3
    checked = check_points(pairs, reference.original_size)
    prepared = await run_in_threadpool(decode_and_prepare)
    preprocess_ms = (time.perf_counter() - started) * 1e3 - reference_ms
    result = await service.match(reference, checked, prepared, options)
    timings = {"preprocess": preprocess_ms, "reference": reference_ms, **result.timings_ms}
    service.metrics.observe_stages(timings)
    headers = {**timing_headers(timings, result.batch_size), **service.headers}
    return JSONResponse(match_json(result, options, s), headers=headers)
