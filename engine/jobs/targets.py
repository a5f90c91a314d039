"""What a job reads and where it writes: targets from files, folders and glob patterns, the input
files checked before any model loads, the targets read one by one (an unreadable one is a failure,
not the job's end), and the output folder made writable."""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from insid3.engine.jobs.job_folder import check_writable
from insid3.engine.runtime.images import PreparedImage
from insid3.errors import InputImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def expand_targets(patterns: Sequence[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns, in order, without duplicates."""
    return unique_targets([path for pattern in patterns for path in expand_pattern(pattern)], patterns)


def expand_pattern(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.exists():
        return [path]
    if glob.has_magic(pattern):
        return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    raise InputImageError(f"target {pattern} does not exist")


def unique_targets(found: list, patterns: Sequence[str]) -> list:
    """The targets without duplicates, refused when none or when two share a stem (paths or URIs)."""
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputImageError(f"no target images found in {' '.join(patterns)}")
    stems: dict[str, Path] = {}
    for path in unique:
        if path.stem in stems:
            raise InputImageError(
                f"targets {stems[path.stem]} and {path} share the stem {path.stem!r}: their masks would collide"
            )
        stems[path.stem] = path
    return unique


def readable_targets(prepare: Callable[[Path], PreparedImage], targets: Iterable,
                     failures: list[tuple[object, str]]) -> Iterator[PreparedImage]:
    """Each target as `prepare` reads it (Segmenter.prepare); one it cannot read is appended to
    `failures` with its one-line reason, and the others go on."""
    for target in targets:
        try:
            yield prepare(target)
        except InputImageError as exc:
            failures.append((target, str(exc)))


def check_input_files(files: Iterable[tuple[str, Path]]) -> None:
    """Each (flag, path) names an existing file, not a folder."""
    for flag, path in files:
        if path.is_dir():
            raise InputImageError(f"{flag} {path} is a folder: give an image file")
        if not path.is_file():
            raise InputImageError(f"{flag} {path} does not exist")


def writable_folder(out: Path) -> Path:
    """The output folder checked writable (one line when it cannot be); the job makes it when it
    starts (job_folder.check_writable)."""
    if out.exists() and not out.is_dir():
        raise InputImageError(f"--out {out} exists and is not a folder")
    try:
        check_writable(out)
    except OSError as exc:
        raise InputImageError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    return out
