"""The web page of `insid3-serve`: plain HTML, CSS and ES modules in this folder, no build step,
served by routes/web.py (GET / and /web/<file>).

The page talks only to the API beside it (`/v1/...`, docs/serve.md) and loads nothing from
elsewhere: the machines it runs on may have no network.
"""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
# Browsers run a module script only when it is served with a JavaScript media type.
MEDIA_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
