"""A real Label Studio for the tests: started from its own virtual environment (.venv-ls, which
setup.sh makes: its pins conflict with ours), on loopback, sqlite in a temporary folder, a user
and a token made from environment variables, no browser, nothing sent anywhere.

    with running_label_studio(tmp_path) as studio:
        studio.url, studio.token, studio.documents   # documents: its local-files document root

Where it cannot start (no .venv-ls), MISSING says why: the tests skip with that line, except in
CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from insid3.engine.serve.launch import free_port

ROOT = Path(__file__).resolve().parents[2]
EXECUTABLE = Path(os.environ.get("INSID3_LABEL_STUDIO_BIN") or ROOT / ".venv-ls" / "bin" / "label-studio")
IN_CI = os.environ.get("CI") == "true"
TOKEN = "insid3-test-token-0123456789abcdef0123456789"
USER, PASSWORD = "insid3@example.com", "insid3-test-password"


def _missing() -> str | None:
    if not EXECUTABLE.is_file():
        return f"Label Studio is not installed at {EXECUTABLE} (setup.sh makes .venv-ls)"
    try:
        import label_studio_sdk  # noqa: F401
    except ImportError:
        return "label-studio-sdk is not installed in this environment (pip install -e '.[test]')"
    return None


MISSING = _missing()


@dataclass(frozen=True)
class LabelStudio:
    url: str
    token: str
    documents: Path  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    process: subprocess.Popen
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def environment(data: Path, documents: Path) -> dict[str, str]:
    """Headless, offline, loopback (issue 24 lists what each one does)."""
    return {
        **os.environ,
        "LATEST_VERSION_CHECK": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false",
        "ML_BLOCK_LOCAL_IP": "false",  # else /api/ml refuses a backend on 127.0.0.1
        "SSRF_PROTECTION_ENABLED": "false",  # else the backend's webhook is silently not created
        "LABEL_STUDIO_USERNAME": USER, "LABEL_STUDIO_PASSWORD": PASSWORD, "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(documents),
    }


@contextmanager
def running_label_studio(folder: Path, ready_timeout_s: float = 180.0) -> Iterator[LabelStudio]:
    data, documents = folder / "data", folder / "documents"
    data.mkdir(parents=True)
    documents.mkdir(parents=True)
    port = free_port()
    command = [str(EXECUTABLE), "start", "--no-browser", "--data-dir", str(data), "--internal-host", "127.0.0.1",
               "--port", str(port), "--enable-legacy-api-token"]
    log_path = folder / "label-studio.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment(data, documents),
                                   cwd=folder, start_new_session=True)
    studio = LabelStudio(f"http://127.0.0.1:{port}", TOKEN, documents, process, log_path)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {process.returncode}:\n{studio.log_tail()}")
            try:
                if httpx.get(f"{studio.url}/api/projects", headers=studio.headers, timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Label Studio not ready after {ready_timeout_s:.0f} s:\n{studio.log_tail()}")
            time.sleep(0.5)
        yield studio
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(data, ignore_errors=True)


def wait_for(check, timeout_s: float = 60.0, every_s: float = 0.2, what: str = "the condition"):
    """Poll `check()` until it returns something truthy; its last value, or AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s:.0f} s (last: {value!r})")
        time.sleep(every_s)
