"""The web page (plain HTML, CSS and ES modules in engine/serve/web/, no build step).

    GET /             index.html: paint a reference mask, drop targets, see and download masks
    GET /web/<file>   its stylesheet and scripts (only the .css and .js files of that folder)
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

from insid3.engine.serve.web import MEDIA_TYPES, WEB_DIR

# Revalidate on every load (ETag): a page from before an upgrade never talks to the new API.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def _asset(name: str) -> FileResponse:
    path = WEB_DIR / name
    if "/" in name or path.suffix not in MEDIA_TYPES or not path.is_file():
        raise HTTPException(status_code=404, detail=f"no page file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)


@router.get("/")
async def index() -> FileResponse:
    return _asset("index.html")


@router.get("/web/{name}")
async def asset(name: str) -> FileResponse:
    return _asset(name)
