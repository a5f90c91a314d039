"""The web page's files as insid3-serve serves them: no browser needed (tests/web/test_web_page.py drives one)."""

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from insid3.engine.serve.routes.web import router
from insid3.engine.serve.web import MEDIA_TYPES, WEB_DIR

ROOT = Path(__file__).resolve().parents[2]
PAGE_FILES = sorted(path for path in WEB_DIR.iterdir() if path.suffix in MEDIA_TYPES)


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_the_page_is_served_at_the_root(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.text == (WEB_DIR / "index.html").read_text()
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("name,media_type", [("app.js", "text/javascript"), ("app.css", "text/css")])
def test_scripts_and_styles_have_their_media_types(client, name, media_type):
    # A module script served as anything but JavaScript is refused by the browser.
    response = client.get(f"/web/{name}")
    assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)


@pytest.mark.parametrize("path", ["/web/__init__.py", "/web/missing.js", "/web/..%2F__init__.py", "/web/"])
def test_nothing_else_of_the_folder_is_served(client, path):
    assert client.get(path).status_code == 404


def test_the_page_is_not_part_of_the_api_schema(client):
    assert client.get("/openapi.json").json()["paths"] == {}


def test_every_file_the_page_loads_exists_and_nothing_comes_from_elsewhere():
    html = (WEB_DIR / "index.html").read_text()
    linked = re.findall(r'(?:src|href)="/web/([^"]+)"', html)
    assert {"app.js", "app.css"} <= set(linked)
    imported = [name for path in WEB_DIR.glob("*.js") for name in re.findall(r'from "\./([^"]+)"', path.read_text())]
    for test in (ROOT / "tests").glob("test_web_*.py"):  # the browser tests import modules of the page too
        imported += re.findall(r'import\("/web/([^"]+)"\)', test.read_text())
    for name in linked + imported:
        assert (WEB_DIR / name).is_file(), name
    for path in PAGE_FILES:  # no CDN, web font or remote script: the machines may have no network
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), path.name


def test_every_page_file_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "insid3.engine.serve.web" in config["packages"]
    patterns = config["package-data"]["insid3.engine.serve.web"]
    for path in PAGE_FILES:
        assert any(path.match(pattern) for pattern in patterns), path.name
