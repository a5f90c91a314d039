"""The app factory of `insid3-serve`: `create_app(service)` -> the FastAPI app, the same whichever
execution runs the engine (local.py: one process; ray_app.py: a Ray Serve replica).

The routes live one module per resource in routes/ (references, segment, match, health, web) and
are mounted here, in one place; the API, its limits and its errors are described in docs/serve.md.

Errors are {"detail": "<one line>"}, one rule for client errors:
    422  the request does not fit the API's schema (the OpenAPI page, /docs): a field missing,
         of the wrong type or outside its declared values
    400  it fits the schema but what it carries cannot be used: an upload that is not an image,
         a mask of another size than its image or with no foreground, points outside the image,
         fields that contradict each other
    404  an unknown or expired reference, or no such route; 405 a route without that method
    413  the body, an image's pixels or a reference's bytes over a limit
    503  the queue is full (with Retry-After) or the engine is not loaded
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from insid3.engine.serve.errors import QueueFullError, ServeError
from insid3.engine.serve.limits import BodyLimitMiddleware
from insid3.engine.serve.metrics import RequestMetricsMiddleware
from insid3.engine.serve.responses import error_response
from insid3.engine.serve.routes import health, label_studio, match, references, segment, web
from insid3.engine.serve.service import Service
from insid3.errors import Insid3Error

log = logging.getLogger("insid3.serve")


def status_of(exc: Insid3Error) -> int:
    """A serving error's own status; any other engine error is the client's input (400)."""
    return exc.status if isinstance(exc, ServeError) else 400


def _routing_detail(request: Request, exc: StarletteHTTPException) -> str:
    """Starlette's bare "Not Found" / "Method Not Allowed" of the router, said with the request."""
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 405:
        return f"{where}: the route does not take {request.method} (it takes {exc.headers.get('Allow', '?')})"
    return f"{where}: no such route (the API's routes are listed at /docs)"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Insid3Error)
    async def insid3_error(_: Request, exc: Insid3Error) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QueueFullError) else None
        return error_response(status_of(exc), str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        return error_response(422, problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The router's own 404 (no route matched) and 405 (no such method): said with the request.
        by_router = exc.status_code == 405 or (exc.status_code == 404 and "route" not in request.scope)
        detail = _routing_detail(request, exc) if by_router else str(exc.detail)
        return error_response(exc.status_code, detail, exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


def create_app(service: Service) -> FastAPI:
    """The HTTP app of `service`, which starts with the app and stops with it."""

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
        redirect_slashes=False,  # a path is the route's or a 404: never a 307 to another one
    )
    app.state.service = service
    _install_error_handlers(app)
    # The last added is the outermost: metrics see every response, the 413s of the limit included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.settings.max_upload_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=service.metrics)
    for router in (health.router, references.router, segment.router, match.router, web.router,
                   label_studio.router):  # Label Studio's ML backend protocol (docs/label-studio.md)
        app.include_router(router)
    return app
