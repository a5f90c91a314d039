"""What the routes are given (FastAPI dependencies): the app's Service, ready or not.

    @router.post("/v1/segment")
    async def segment(service: ReadyService, ...)   # 503 "the engine is not loaded" before it runs
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from insid3.engine.serve.errors import NotReadyError
from insid3.engine.serve.service import Service


def service_of(request: Request) -> Service:
    """The Service the app factory (app.create_app) was given."""
    return request.app.state.service


def ready_service(service: Annotated[Service, Depends(service_of)]) -> Service:
    if not service.is_ready():
        raise NotReadyError("the engine is not loaded")
    return service


AnyService = Annotated[Service, Depends(service_of)]  # the probes: ready or not
ReadyService = Annotated[Service, Depends(ready_service)]  # the engine's routes
