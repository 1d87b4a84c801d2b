"""One writer at a time: a lock file held for as long as a command writes a folder's outputs.

``with locked(path, command="enrich rank"):`` creates ``path`` (a hidden ``.…lock`` file)
exclusively and writes the holder into it: pid, host, start time and command. A second
command that wants the same lock fails at once with one line naming the holder, rather than
waiting or interleaving its outputs with the first. The file is removed on release.

Where ``fcntl`` exists (Linux, macOS), the file is also ``flock``-ed: the kernel releases
that lock when the holder dies, however it dies, so a lock left by a killed run is taken over
without guessing. Elsewhere (or where flock is not supported), a lock whose pid no longer
runs on this host is stale and taken over; a lock held from another host is never broken.

Examples
--------
>>> import tempfile, pathlib
>>> lock = pathlib.Path(tempfile.mkdtemp()) / ".enrich.lock"
>>> with locked(lock, command="doctest"):
...     holder(lock)["command"]
'doctest'
>>> lock.exists()
False
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from enrich.errors import EnrichError

__all__ = ["LOCK_NAME", "LockedError", "folder_lock", "holder", "locked"]

#: The lock file of a folder (a workspace, a run folder, an output folder).
LOCK_NAME = ".enrich.lock"

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class LockedError(EnrichError):
    """Another enrich process holds the lock."""


def holder(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What the lock file says about its holder ({} when absent or unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "another enrich process (it is still starting)"
    started = info.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started)))
        if isinstance(started, (int, float))
        else "?"
    )
    return (
        f"`{info.get('command', 'enrich')}` (pid {info.get('pid', '?')} on "
        f"{info.get('host', '?')}, since {when})"
    )


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _record(command: str) -> bytes:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": round(time.time(), 3),
        "command": command,
    }
    return (json.dumps(info) + "\n").encode("utf-8")


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: someone holds it; None: flock is not available here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. a file system without flock
        return None
    return True


@contextlib.contextmanager
def locked(
    path: str | os.PathLike[str], *, command: str | None = None, what: str | None = None
) -> Iterator[Path]:
    """Hold the lock file `path` for the duration of the block.

    Parameters
    ----------
    path : path-like
        The lock file (created, with its folder; removed on release).
    command : str, optional
        Recorded in the lock and shown to whoever is refused (default: this command line).
    what : str, optional
        What is locked, for the error (default: the lock's folder).

    Raises
    ------
    LockedError
        Another live process holds the lock; the message names it.
    """
    path = Path(path)
    made = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    command = command or " ".join(["enrich", *sys.argv[1:]])[:200]
    what = what or str(path.parent)
    record = _record(command)
    try:
        fd = _acquire(path, record, what)
    except BaseException:
        _remove_empty(made)
        raise
    try:
        yield path
    finally:
        # Remove the file before closing: whoever opened it meanwhile sees it is gone.
        with contextlib.suppress(OSError):
            if _same_file(fd, path):
                os.unlink(path)
        os.close(fd)
        _remove_empty(made)  # folders made only for the lock (the command failed early)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


def folder_lock(folder: str | os.PathLike[str], *, command: str | None = None) -> Any:
    """:func:`locked` on ``folder/.enrich.lock``: one writing command per folder."""
    return locked(Path(folder) / LOCK_NAME, command=command, what=str(folder))


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _acquire(path: Path, record: bytes, what: str) -> int:
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
        except FileExistsError:
            taken = _take_over(path, what)
            if taken is None:
                continue  # it went away meanwhile: try to create it again
            fd = taken
        else:
            if _try_flock(fd) is False:  # pragma: no cover - someone flocked our new file
                os.close(fd)
                continue
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, record)  # no fsync: after a crash the flock, not the text, decides
        return fd
    raise LockedError(f"{what} is in use: could not lock {path}; try again")


def _take_over(path: Path, what: str) -> int | None:
    """Open an existing lock file; return its fd if its holder is gone, else refuse."""
    try:
        fd = os.open(path, os.O_RDWR | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symbolic link or unreadable file planted in our place
        raise LockedError(
            f"{path}: cannot use this lock file ({exc.strerror}); remove it if no enrich "
            "command is running"
        ) from None
    got = _try_flock(fd)
    if got is False:
        info = holder(path)
        os.close(fd)
        raise LockedError(f"{what} is in use by {_describe(info)}; wait for it to finish")
    if not _same_file(fd, path):  # released and removed while we opened it
        os.close(fd)
        return None
    info = holder(path)
    if got is None:  # no flock: judge by the pid
        if info.get("host") != socket.gethostname() or _pid_alive(info.get("pid")):
            os.close(fd)
            if not info:
                # Being written right now, or left empty by a crash at creation.
                raise LockedError(
                    f"{what} is in use by {_describe(info)}; if no enrich command is running, "
                    f"delete {path}"
                )
            raise LockedError(
                f"{what} is in use by {_describe(info)}; wait for it to finish (if it is gone, "
                f"delete {path})"
            )
    if info:
        print(
            f"note: taking over the lock of {_describe(info)}, which is no longer running",
            file=sys.stderr,
        )
    return fd
