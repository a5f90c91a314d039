"""A job's output folder: held by one job at a time, and written so that a failure leaves no mess.

Holding. Before a job reads or writes anything in its output folder (its log, its manifest, the
temporaries a crash left) it takes an exclusive advisory lock, `fcntl.flock`, on the file
`.insid3-job.lock` in that folder, and writes into it who holds it: pid, host, start time and
command. The kernel drops the lock when the process ends, however it ends (Ctrl-C, a crash,
SIGKILL), so a dead job never blocks the next one; a second job that finds the lock taken stops
at once with one line naming the holder. One process may ask for a folder it holds again (the
tool, the manifest and the writers each do): the first request locks, `release_folder` unlocks.
The lock file is removed when the folder is released (a crashed holder's file is simply locked
by the next job). flock is advisory: it stops insid3 jobs, not other programs; on NFS, Linux
clients emulate it with byte-range locks held by the server, so jobs on two machines exclude
each other too, while some other network file systems ignore it.

A job that writes no result (a bad backend, a reference mask of the wrong size: anything that
fails before the first target) leaves the folder as it found it: removed if the job made it,
emptied again if it was empty, so a failed start does not leave a folder that looks like a job.

Writing. Every OSError raised while writing an output becomes one OutputWriteError line; a full
disk (ENOSPC) or an exceeded quota (EDQUOT) names the folder, what the write needed and what is
free. The writers remove their temporary file first and never record a target whose files are
incomplete, so the same command resumes once there is room.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from insid3.errors import Insid3Error

LOCK_FILE = ".insid3-job.lock"
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class FolderBusyError(Insid3Error):
    """Another running job holds the output folder."""


class OutputWriteError(Insid3Error):
    """An output could not be written (a full disk, a quota, permissions): one line, resumable."""


@dataclass
class _Hold:
    handle: int
    lock_path: Path
    made: list[Path]  # the folders this job made for it, outermost first: removed on release if unused
    was_empty: bool  # the folder held nothing when taken: emptied again on release if unused


_held: dict[Path, _Hold] = {}
_held_guard = threading.Lock()


def _key(folder: Path) -> Path:
    return Path(os.path.abspath(folder))


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the ones this call made, outermost first (one that
    another process made meanwhile is not ours, and is never removed by us)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    made = []
    for candidate in reversed(missing):
        try:
            os.mkdir(candidate)
            made.append(candidate)
        except FileExistsError:
            pass
    return made


def _remove_made(made: list[Path]) -> None:
    """Remove the (now empty) folders of `made`, innermost first; one that is not empty (another
    job's files in it) stays, and so do its parents."""
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError:
            return


def _holder_text() -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    command = " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                       "command": command[:300]}) + "\n"


def describe_holder(lock_path: Path) -> str:
    """Who holds the folder, in words, from what the holder wrote into the lock file."""
    try:
        holder = json.loads(lock_path.read_text(encoding="utf-8"))
        return (f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: "
                f"{holder['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a job that has not yet said who it is"


def hold_folder(folder: Path) -> None:
    """Make `folder` (if missing) and lock it for this process; FolderBusyError when another job holds it."""
    key = _key(folder)
    with _held_guard:
        if key in _held:
            return
        try:
            made = _make_folders(key)
        except OSError as exc:
            raise output_error(exc, key, None) from None
        lock_path = key / LOCK_FILE
        while True:
            try:
                handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise output_error(exc, lock_path, None) from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                raise FolderBusyError(
                    f"{folder} is in use by another job ({describe_holder(lock_path)}): "
                    "wait for it to end, or give another output folder"
                ) from None
            # The previous holder may have removed the file between our open and our lock: then we
            # hold a lock on a file nobody else will find, and must lock the one now at the path.
            try:
                same = os.path.samestat(os.fstat(handle), os.stat(lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(handle)
        try:
            os.ftruncate(handle, 0)
            os.write(handle, _holder_text().encode())
        except OSError:
            pass  # a full disk: the lock holds all the same, only the holder's description is missing
        was_empty = all(entry.name == LOCK_FILE for entry in key.iterdir())
        _held[key] = _Hold(handle, lock_path, made, was_empty)


def holds_folder(folder: Path) -> bool:
    """Whether this process holds `folder`."""
    return _key(folder) in _held


def release_folder(folder: Path, *, unused: bool = False) -> None:
    """Unlock `folder` (nothing when not held). unused: this job wrote no result there, so the
    folder goes back to how the job found it: removed if it made it, emptied if it was empty."""
    with _held_guard:
        hold = _held.pop(_key(folder), None)
    if hold is None:
        return
    with contextlib.suppress(OSError):
        hold.lock_path.unlink()  # before unlocking: a waiting job then finds it gone and retries
    os.close(hold.handle)
    key = _key(folder)
    if unused and key in hold.made:  # only this job wrote there: its manifest, legend, ...
        shutil.rmtree(key, ignore_errors=True)
        _remove_made(hold.made)
    elif unused and hold.was_empty:
        for entry in key.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def check_writable(folder: Path) -> None:
    """OSError unless files can be created in `folder`; a folder made for the check is removed
    again (the job makes it when it starts: a run that fails before then leaves nothing)."""
    made = _make_folders(_key(folder))
    try:
        probe = folder / f".write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    finally:
        _remove_made(made)


def free_bytes(folder: Path) -> int | None:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def size_text(size: int | None) -> str:
    if size is None:
        return "an unknown amount"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def output_error(exc: OSError, path: Path, needed: int | None) -> OutputWriteError:
    """The one line for an OSError met writing `path` (`needed`: the bytes that write held)."""
    folder = path.parent
    if exc.errno in FULL_DISK:
        why = "disk quota exceeded" if exc.errno == errno.EDQUOT else "disk full"
        need = f"writing {path.name} needed {size_text(needed)}" if needed is not None else f"writing {path.name}"
        return OutputWriteError(
            f"{why} in {folder}: {need}, {size_text(free_bytes(folder))} free; free some space and run the "
            "same command again to resume"
        )
    return OutputWriteError(f"cannot write {path}: {exc.strerror or exc}")


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: a crash leaves the old file or none;
    a failed write removes the temporary and raises OutputWriteError."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise output_error(exc, path, len(data)) from None


def make_folder(path: Path) -> None:
    """A folder inside an output folder (labels/, images/), if missing; OutputWriteError if it cannot be made."""
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path, None) from None


def link_atomically(path: Path, points_to: str) -> None:
    """A symbolic link at `path` to `points_to`, made under a temporary name and renamed."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        os.symlink(points_to, temporary)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise output_error(exc, path, None) from None


def append_line(handle: int, path: Path, line: bytes, *, sync: bool = True) -> None:
    """Append `line` (newline included) to the file open as `handle` (O_APPEND); on failure the
    file is cut back to what it held, so no torn line survives, and OutputWriteError is raised."""
    size = os.fstat(handle).st_size
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(handle, view):]
        if sync:
            os.fsync(handle)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(handle, size)
        raise output_error(exc, path, len(line)) from None


def open_for_append(path: Path) -> int:
    """A handle appending to `path` (created if missing)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise output_error(exc, path, None) from None
