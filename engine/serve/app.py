"""The HTTP API of `insid3-serve` (FastAPI), the same over a local or a Ray Serve service.

    POST   /v1/references               multipart: image, mask (repeat both for more shots)
                                        -> 201 {"reference_id", "shots", "expires_at"}
    POST   /v1/segment                  multipart: reference_id, image, format=png|rle
                                        -> 200 image/png (mode L, 0/255, the target's size)
                                           or {"size": [H, W], "counts": "<COCO compressed RLE>"};
                                        several reference_id (+ name), format=label-png|coco:
                                        a label PNG or COCO instances (serve/concepts.py)
    DELETE /v1/references/{id}          -> 204
    POST   /v1/match                    keypoint matching, and /v1/match/references (serve/matching.py)
    GET    /healthz                     -> 200 while the process is alive
    GET    /readyz                      -> 200 once the engine is loaded, else 503
    GET    /metrics                     -> Prometheus text (see metrics.py)

RLE: COCO's column-major run lengths (zeros first) in the *compressed string* form of
pycocotools' `mask.encode` (`insid3.engine.runtime.rle`); `pycocotools.mask.decode` reads it.

Per-stage timings (ms) come back as one `Server-Timing` header (queue, preprocess, backbone,
debias, matching, clustering, aggregation, upsample, encode) and as `X-Insid3-Timing-<Stage>-Ms`
headers; `backbone` is the whole batch's call, shared by `X-Insid3-Batch-Size` targets.

Errors are {"detail": "<one line>"}: 400 undecodable/malformed upload or mask size mismatch,
404 unknown or expired reference, 413 body/pixels/reference bytes over a limit, 422 missing
fields or an empty mask, 503 queue full (with Retry-After) or engine not ready.
"""

from __future__ import annotations

import io
import logging
import time
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.rle import encode_rle
from insid3.engine.serve.concepts import CONCEPT_FORMATS, ConceptsAnswer, NonEmpty, named_references, respond
from insid3.engine.serve.errors import (
    BadRequestError,
    NotReadyError,
    QueueFullError,
    ServeError,
    UnknownReferenceError,
)
from insid3.engine.serve.limits import BodyLimitMiddleware
from insid3.engine.serve.matching import install_match_routes
from insid3.engine.serve.metrics import RequestMetricsMiddleware
from insid3.engine.serve.service import Service, ShotUpload
from insid3.engine.serve.uploads import check_mask, decode_upload
from insid3.engine.serve.web import install_web_page
from insid3.errors import InputImageError, Insid3Error, ReferenceMaskError

log = logging.getLogger("insid3.serve")


def encode_png(mask: np.ndarray) -> bytes:
    """A bool (H, W) mask as an 8-bit grayscale PNG, 0 background and 255 foreground."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def timing_headers(timings_ms: dict[str, float], batch_size: int) -> dict[str, str]:
    headers = {f"X-Insid3-Timing-{stage.capitalize()}-Ms": f"{ms:.3f}" for stage, ms in timings_ms.items()}
    headers["Server-Timing"] = ", ".join(f"{stage};dur={ms:.3f}" for stage, ms in timings_ms.items())
    headers["X-Insid3-Batch-Size"] = str(batch_size)
    return headers


def _status_of(exc: Exception) -> int:
    if isinstance(exc, ServeError):
        return exc.status
    if isinstance(exc, ReferenceMaskError):
        return 422
    if isinstance(exc, (InputImageError, Insid3Error)):
        return 400
    return 500


def _error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Insid3Error)
    async def insid3_error(_: Request, exc: Insid3Error) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QueueFullError) else None
        return _error_response(_status_of(exc), str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        return _error_response(422, problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error_response(500, f"internal error: {type(exc).__name__}: {exc}")


async def _read_image(upload: UploadFile, field: str, max_pixels: int) -> tuple[bytes, Image.Image]:
    data = await upload.read()
    return data, await run_in_threadpool(decode_upload, data, field, max_pixels)


def create_app(service: Service) -> FastAPI:
    settings = service.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="insid3-serve",
        summary="INSID3 in-context segmentation with cached references and dynamic batching",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    # The last added is the outermost: metrics see every response, the 413s of the limit included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=service.metrics)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if not service.is_ready():
            return _error_response(503, "the engine is not loaded")
        return JSONResponse({"status": "ready", "engine": service.describe()})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/references", status_code=201)
    async def register_reference(
        image: Annotated[list[UploadFile], File(description="reference image; repeat for more shots")],
        mask: Annotated[list[UploadFile], File(description="its mask (any pixel > 0 is foreground)")],
    ) -> dict:
        if len(image) != len(mask):
            raise BadRequestError(f"{len(image)} image field(s) but {len(mask)} mask field(s): send one mask per image")
        if len(image) > settings.max_shots:
            raise BadRequestError(f"{len(image)} shots exceed the limit of {settings.max_shots} (max_shots)")
        if not service.is_ready():
            raise NotReadyError("the engine is not loaded")
        shots = []
        for index, (image_file, mask_file) in enumerate(zip(image, mask)):
            image_bytes, decoded_image = await _read_image(image_file, f"image[{index}]", settings.max_image_pixels)
            mask_bytes, decoded_mask = await _read_image(mask_file, f"mask[{index}]", settings.max_image_pixels)
            await run_in_threadpool(check_mask, decoded_mask, decoded_image.size, index)
            shots.append(ShotUpload(image_bytes, mask_bytes, decoded_image, decoded_mask))
        registered = await service.register(shots)
        return {"reference_id": registered.reference_id, "shots": registered.shots, "expires_at": registered.expires_at_utc}

    @app.post("/v1/segment")
    async def segment(
        reference_id: Annotated[list[NonEmpty], Form(description="repeat for several concepts (serve/concepts.py)")],
        image: Annotated[UploadFile, File(description="the target image")],
        format: Annotated[Literal["png", "rle", "label-png", "coco"], Form()] = "png",
        name: Annotated[list[NonEmpty] | None, Form(description="one per reference_id: the concepts' names")] = None,
        instances: Annotated[bool, Form(description="coco: one annotation per connected component")] = False,
        min_area: Annotated[int, Form(ge=0, description="coco with instances: smaller components dropped")] = 0,
    ) -> Response:
        if not service.is_ready():
            raise NotReadyError("the engine is not loaded")
        several = len(reference_id) > 1 or format in CONCEPT_FORMATS
        named_ids = named_references(reference_id, name, format) if several else None
        started = time.perf_counter()
        data = await image.read()

        def decode_and_prepare() -> PreparedImage:
            return service.prepare(decode_upload(data, "image", settings.max_image_pixels))

        prepared = await run_in_threadpool(decode_and_prepare)
        preprocess_ms = (time.perf_counter() - started) * 1e3
        if named_ids is not None:
            answer = ConceptsAnswer(format, image.filename or "image", instances, min_area)
            return await respond(service, named_ids, prepared, answer, timing_headers, preprocess_ms)
        segmented = await service.segment(reference_id[0], prepared)
        result = segmented.result
        started = time.perf_counter()
        if format == "png":
            body = await run_in_threadpool(encode_png, result.mask)
            response: Response = Response(body, media_type="image/png")
        else:
            response = JSONResponse(await run_in_threadpool(encode_rle, result.mask))
        timings = {"preprocess": preprocess_ms, **result.timings_ms, "encode": (time.perf_counter() - started) * 1e3}
        service.metrics.observe_stages(timings)
        response.headers.update({**timing_headers(timings, result.batch_size), **segmented.headers})
        return response

    @app.delete("/v1/references/{reference_id}", status_code=204)
    async def delete_reference(reference_id: str) -> Response:
        if not await service.delete(reference_id):
            raise UnknownReferenceError(f"reference {reference_id!r} is unknown or expired")
        return Response(status_code=204)

    install_match_routes(app, service, timing_headers)  # POST /v1/match and its references (serve/matching.py)
    install_web_page(app)  # GET / : the web page (engine/serve/web/)
    return app
