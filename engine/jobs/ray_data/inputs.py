"""A Ray job's inputs: local files, folders and globs (as `insid3-segment` reads them) or URIs
(s3://, gs://, file://: whatever pyarrow's file systems open where their libraries and
credentials are installed; insid3 adds no dependency for them).

The driver lists them; the reading tasks fetch each file's bytes where they run, so a cluster
reads the object store directly and the driver never holds the images.
"""

from __future__ import annotations

import fnmatch
import glob
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Union
from urllib.parse import urlparse

from insid3.engine.jobs.targets import IMAGE_SUFFIXES, expand_pattern, unique_targets
from insid3.errors import InputImageError


def is_uri(text: str) -> bool:
    """scheme://...; a Windows drive letter ("C:\\") is not a scheme."""
    return "://" in text and len(urlparse(text).scheme) > 1


@dataclass(frozen=True)
class RemoteTarget:
    """An input named by a URI, as the writers see a target: its stem, and str() the URI."""

    uri: str

    @property
    def name(self) -> str:
        return PurePosixPath(urlparse(self.uri).path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(urlparse(self.uri).path).stem

    def __str__(self) -> str:
        return self.uri


Target = Union[Path, RemoteTarget]


@lru_cache(maxsize=16)
def _filesystem(root: str) -> Any:
    """The pyarrow file system of a URI's scheme and host (one per process: S3 clients are costly)."""
    from pyarrow import fs

    filesystem, _ = fs.FileSystem.from_uri(root)
    return filesystem


def _open_uri(uri: str) -> tuple[Any, str]:
    """(file system, its path for `uri`), or InputImageError naming the URI."""
    from pyarrow import fs

    parsed = urlparse(uri)
    try:
        _, path = fs.FileSystem.from_uri(uri)
        return _filesystem(f"{parsed.scheme}://{parsed.netloc}/"), path
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid/NotImplemented/OSError by scheme
        raise InputImageError(f"target {uri}: {exc}") from None


def list_targets(patterns: list[str]) -> list[Target]:
    """`insid3-segment`'s targets, URIs listed through pyarrow: in order, no duplicate, no shared stem."""
    found: list[Target] = []
    for pattern in patterns:
        found += list_uri(pattern) if is_uri(pattern) else expand_pattern(pattern)
    return unique_targets(found, patterns)


def list_uri(uri: str) -> list[RemoteTarget]:
    """A file, a folder's images (sorted) or a glob in the last component, each as a URI."""
    from pyarrow import fs

    base, pattern = uri.rstrip("/"), None
    if glob.has_magic(PurePosixPath(urlparse(uri).path).name):
        base, pattern = uri.rsplit("/", 1)
    filesystem, path = _open_uri(base)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File and pattern is None:
        return [RemoteTarget(uri)]
    if info.type != fs.FileType.Directory:
        raise InputImageError(f"target {uri} does not exist")
    found = []
    for entry in sorted(filesystem.get_file_info(fs.FileSelector(path)), key=lambda e: e.path):
        name = PurePosixPath(entry.path).name
        if entry.type != fs.FileType.File or (pattern and not fnmatch.fnmatchcase(name, pattern)):
            continue
        if pattern or PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
            found.append(RemoteTarget(f"{base}/{entry.path[len(path):].lstrip('/')}"))
    return found


def read_input(location: str, name: str) -> bytes:
    """The bytes of a local path or a URI; InputImageError (one line, naming the input as `name`)
    when they cannot be read."""
    if not is_uri(location):
        path = Path(location)
        if not path.is_file():
            raise InputImageError(f"image {name} does not exist")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InputImageError(f"cannot read image {name}: {exc.strerror or exc}") from None
    filesystem, path = _open_uri(location)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.readall()
    except Exception as exc:  # noqa: BLE001 - FileNotFoundError, OSError, pyarrow's errors
        raise InputImageError(f"cannot read image {name}: {exc}") from None
