"""Where a bundle is written: refuse to clobber, write into a sibling staging folder, then swap.

A failed export leaves no half-written bundle behind, and an existing bundle survives until the
new one is complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from insid3.errors import ExportError
from insid3.format.bundle import METADATA_FILE


def check_output_folder(out: Path, *, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / METADATA_FILE).is_file():
        raise ExportError(f"output folder {out} is not empty and holds no insid3 bundle: refusing to overwrite it")
    if not force:
        raise ExportError(f"output folder {out} already holds a bundle: pass --force to replace it")


def make_staging_folder(out: Path) -> Path:
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as exc:
        raise ExportError(f"output folder {out} is not writable: {exc.strerror or exc}") from exc
    if not os.access(staging, os.W_OK):
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"output folder {out} is not writable")
    return staging


def publish(staging: Path, out: Path) -> None:
    """Replaces `out` (empty, or a bundle checked by check_output_folder) with `staging`."""
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
