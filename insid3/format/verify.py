"""A bundle's files against what insid3.json recorded: sizes always, sha256 once per file version.

Hashing a 1.2 GB ViT-L model takes seconds, so a verified digest is remembered in
`<bundle>/.insid3-verified.json` together with the file's size and modification time, and the
file is hashed again only when either changes. A bundle folder that is read-only is verified
every time instead (nothing is written, nothing fails).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Protocol

from insid3.errors import BundleError

VERIFIED_FILE = ".insid3-verified.json"


class RecordedFile(Protocol):
    """What insid3.json records of a file (insid3.format.bundle.Artifact), as verifying reads it."""

    file: str  # relative to the bundle folder
    bytes: int
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_cache(folder: Path) -> dict:
    try:
        data = json.loads((folder / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(folder: Path, cache: dict) -> None:
    temporary = folder / f"{VERIFIED_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(json.dumps(cache, indent=1) + "\n")
        os.replace(temporary, folder / VERIFIED_FILE)
    except OSError:  # a read-only bundle: verify again next time
        temporary.unlink(missing_ok=True)


def verify_artifacts(folder: Path, artifacts: tuple[RecordedFile, ...]) -> None:
    """BundleError naming the first file whose size or sha256 differs from its record."""
    cache, changed = _read_cache(folder), False
    for artifact in artifacts:
        path = folder / artifact.file
        stat = path.stat()
        if stat.st_size != artifact.bytes:
            raise BundleError(
                f"bundle {folder}: {artifact.file} is {stat.st_size} bytes but insid3.json records "
                f"{artifact.bytes} (truncated or replaced): re-export the bundle or restore the file"
            )
        stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": artifact.sha256}
        if cache.get(artifact.file) == stamp:
            continue
        digest = sha256_of(path)
        if digest != artifact.sha256:
            raise BundleError(
                f"bundle {folder}: {artifact.file} does not match the sha256 recorded in insid3.json "
                f"(recorded {artifact.sha256[:16]}..., found {digest[:16]}...): the file is damaged "
                "or was replaced; re-export the bundle or restore the file"
            )
        cache[artifact.file], changed = stamp, True
    if changed:
        _write_cache(folder, cache)
