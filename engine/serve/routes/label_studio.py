"""Label Studio's ML backend protocol at /label-studio (connect Label Studio to
http://HOST:PORT/label-studio; docs/label-studio.md). What each call does: label_studio_backend.py.

    GET  /label-studio/health         -> {"status": "UP", "model_class": "INSID3", ...} once loaded, else 503
    POST /label-studio/setup          {project, schema, hostname, access_token} -> {"model_version"};
                                      an unservable labelling config -> 307 to /label-studio/unservable/<why>,
                                      which answers 400 (Label Studio shows a backend's error only
                                      as "400 Client Error: Bad Request for url: <url>": the url says why)
    POST /label-studio/predict        {tasks, project, label_config} -> {"results": [one per task, in order]}
    POST /label-studio/webhook        Label Studio's events; annotation ones are applied after the answer
    POST /label-studio/train          nothing to train: references follow the annotations as they come
    GET  /label-studio/projects/{project}   the project's shots per label, model_version, pending work
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from insid3.engine.jobs.label_studio import LabelStudioFormatError
from insid3.engine.serve.deps import AnyService, ReadyService
from insid3.engine.serve.errors import NotReadyError, UnknownReferenceError
from insid3.engine.serve.label_studio_backend import LabelStudioBackend, LabelStudioSettings

router = APIRouter(prefix="/label-studio", tags=["label-studio"])


def backend_of(request: Request, service: ReadyService) -> LabelStudioBackend:
    """The app's one backend, made on first use (its settings from the environment)."""
    backend = getattr(request.app.state, "label_studio", None)
    if backend is None:
        backend = request.app.state.label_studio = LabelStudioBackend(service, LabelStudioSettings.from_environment())
    return backend


Backend = Annotated[LabelStudioBackend, Depends(backend_of)]


class SetupRequest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    project: str = Field(min_length=1, description="Label Studio's '<id>.<created timestamp>'")
    label_config: str = Field(alias="schema", description="the project's labelling config (XML)")
    hostname: str | None = None
    access_token: str | None = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    tasks: list[dict[str, Any]]
    project: str = Field(min_length=1)
    label_config: str | None = None


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    action: str
    project: dict[str, Any] | None = None
    annotation: dict[str, Any] | list[dict[str, Any]] | None = None
    task: dict[str, Any] | list[dict[str, Any]] | None = None
    annotations: list[dict[str, Any]] | None = None


def slug(message: str) -> str:
    return re.sub(r"[^A-Za-z0-9$.]+", "-", message).strip("-")[:300]


@router.get("/health")
async def health(service: AnyService) -> JSONResponse:
    if not service.is_ready():
        raise NotReadyError("the engine is not loaded")
    return JSONResponse({"status": "UP", "model_class": "INSID3", "engine": service.describe()})


@router.post("/setup")
async def setup(request: SetupRequest, backend: Backend) -> Any:
    try:
        return await backend.setup({**request.model_dump(), "schema": request.label_config})
    except LabelStudioFormatError as exc:
        return RedirectResponse(f"{router.prefix}/unservable/{slug(str(exc))}", status_code=307)


@router.api_route("/unservable/{why}", methods=["GET", "POST"], include_in_schema=False)
async def unservable(why: str) -> JSONResponse:
    message = why.replace("-", " ")
    return JSONResponse({"detail": message, "error": message}, status_code=400)


@router.post("/predict")
async def predict(request: PredictRequest, backend: Backend) -> dict:
    return await backend.predict(request.model_dump())


@router.post("/webhook")
async def webhook(event: WebhookEvent, backend: Backend) -> dict:
    return await backend.webhook(event.model_dump())


@router.post("/train")
async def train() -> dict:
    return {"status": "ok", "detail": "nothing to train: INSID3's references follow the annotations as they arrive"}


@router.get("/projects/{project}")
async def project(project: str, backend: Backend) -> dict:
    described = backend.describe_project(project)
    if described is None:
        raise UnknownReferenceError(f"project {project} is not set up")
    return described
