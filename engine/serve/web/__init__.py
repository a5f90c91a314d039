"""The web page of `insid3-serve`: plain HTML, CSS and ES modules in this folder, no build step.

    GET /             index.html: paint a reference mask, drop targets, see and download masks
    GET /web/<file>   its stylesheet and scripts (only the .css and .js files of this folder)

The page talks only to the API beside it (`/v1/...`, see app.py) and loads nothing from
elsewhere: the machines it runs on may have no network.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

WEB_DIR = Path(__file__).resolve().parent
# Browsers run a module script only when it is served with a JavaScript media type.
MEDIA_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
# Revalidate on every load (ETag): a page from before an upgrade never talks to the new API.
NO_CACHE = {"Cache-Control": "no-cache"}


def _asset(name: str) -> FileResponse:
    path = WEB_DIR / name
    if "/" in name or path.suffix not in MEDIA_TYPES or not path.is_file():
        raise HTTPException(status_code=404, detail=f"no page file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)


def install_web_page(app: FastAPI) -> None:
    """Serve the page at `/` and its files at `/web/<name>`; the API's routes are untouched."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return _asset("index.html")

    @app.get("/web/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        return _asset(name)
