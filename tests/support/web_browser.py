"""What the browser tests of the web page share (tests/test_web_*.py): whether Debian's chromium
and Playwright are here, and how a person's actions are synthesised. Their fixtures (the browser,
a real insid3-serve, a fresh page per test) are in web_fixtures.py.

A test module skips itself where SKIP_HERE says (in CI, CI=true, a missing browser fails every
test instead: CI must run them) and loads the fixtures as a plugin:

    pytest_plugins = ["support.web_fixtures"]  # one browser and one server for every browser test
"""

import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
MAX_IMAGE_PIXELS = 100_000  # the scenes (240 x 320 = 76,800) pass; a "too large" target does not
SCENE_SIZE = (240, 320)


def browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (the test extra: pip install -e '.[test]')"
    if not CHROMIUM.is_file():
        return f"no chromium at {CHROMIUM} (./setup.sh installs Debian's chromium with apt where it can)"
    return None


MISSING = browser_missing()
IN_CI = os.environ.get("CI") == "true"
SKIP_HERE = MISSING is not None and not IN_CI


def png_file(folder: Path, name: str, array: np.ndarray) -> Path:
    path = folder / name
    Image.fromarray(array).save(path)
    return path


def wait_for_shots(page, count: int) -> None:
    """Until the page holds `count` shots, the last one shown (loading decodes the file: async)."""
    page.wait_for_function("n => document.querySelectorAll('#shots .shot').length === n", arg=count)
    page.wait_for_selector("#reference-frame canvas.shot-mask")


def paint_over(page, mask: np.ndarray, strokes: int = 3) -> None:
    """Drag the brush across a region of the shown shot (its bool mask): a few horizontal strokes through its box."""
    box = page.locator("#reference-frame canvas.shot-mask").bounding_box()
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    for row in np.linspace(np.percentile(ys, 30), np.percentile(ys, 70), strokes):
        left, right = np.percentile(xs, 25), np.percentile(xs, 75)
        page.mouse.move(box["x"] + box["width"] * left / width, box["y"] + box["height"] * row / height)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * right / width, box["y"] + box["height"] * row / height, steps=8)
        page.mouse.up()


def downloaded(page, locator) -> tuple[str, bytes]:
    with page.expect_download() as info:
        locator.click()
    return info.value.suggested_filename, Path(info.value.path()).read_bytes()


def read_mask_png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "L"
    array = np.asarray(image)
    assert set(np.unique(array)) <= {0, 255}
    return array > 0


def api_answers(server, shot: tuple[bytes, bytes], targets, profile: dict | None = None) -> dict[str, tuple[np.ndarray, dict]]:
    """{target name: (mask, quality record)} as the API answers them for this reference and profile."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        image, mask = shot
        data = {} if profile is None else {"profile": json.dumps(profile)}
        registered = http.post("/v1/references", data=data, files=[("image", ("ref.png", image, "image/png")),
                                                                   ("mask", ("mask.png", mask, "image/png"))])
        assert registered.status_code == 201, registered.text
        found = {}
        for path in targets:
            answer = http.post("/v1/segment", data={"reference_id": registered.json()["reference_id"]},
                               files={"image": (path.name, path.read_bytes(), "image/png")})
            assert answer.status_code == 200, answer.text
            found[path.name] = (np.asarray(Image.open(io.BytesIO(answer.content))) > 0,
                                json.loads(answer.headers["X-Insid3-Quality"]))
        return found
