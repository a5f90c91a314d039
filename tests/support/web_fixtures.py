"""The browser tests' fixtures, loaded as a plugin (`pytest_plugins = ["support.web_fixtures"]`): Debian's
chromium driven by Playwright, a real insid3-serve on loopback with the tiny random-init bundle
(a browser per module, one server for the session), and a fresh page per test that fails on any script error."""

import os
from pathlib import Path

import pytest

from insid3.engine.serve.launch import running_server
from support.web_browser import CHROMIUM, CHROMIUM_ARGS, MAX_IMAGE_PIXELS, MISSING


@pytest.fixture(scope="module")
def browser():
    """One browser per test module: sync Playwright keeps an event loop running while it is open,
    which would break any later test that calls asyncio.run."""
    if MISSING:  # in CI: every test fails, saying why; the rest of the suite still runs
        pytest.fail(f"CI must run the browser tests: {MISSING}", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def server(tiny_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("web-serve") / "server.log"
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--max-batch", "4", "--max-wait-ms", "50",
            "--max-image-pixels", str(MAX_IMAGE_PIXELS)]
    with running_server(args, log) as running:
        yield running


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, pytestconfig):
    """Where screenshots go: $INSID3_TEST_ARTIFACTS (CI collects it), else a pytest temporary folder.

    The folder is printed past pytest's output capture, so every run says where to look."""
    folder = Path(os.environ.get("INSID3_TEST_ARTIFACTS") or tmp_path_factory.mktemp("web-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nweb page test artefacts (screenshots): {folder}")
    return folder


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    opened.goto(server.url)
    opened.wait_for_selector("body[data-ready=true]")
    yield opened
    context.close()
    # An answer the page shows as an error also logs "Failed to load resource": those are expected.
    assert [e for e in errors if "Failed to load resource" not in e] == []
