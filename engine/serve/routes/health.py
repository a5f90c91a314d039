"""Probes and metrics: GET /healthz (alive), /readyz (the engine is loaded), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from insid3.engine.serve.deps import AnyService
from insid3.engine.serve.responses import error_response

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(service: AnyService) -> JSONResponse:
    if not service.is_ready():
        return error_response(503, "the engine is not loaded")
    return JSONResponse({"status": "ready", "engine": service.describe()})


@router.get("/metrics")
async def metrics(service: AnyService) -> Response:
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
