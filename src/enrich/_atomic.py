"""Atomic file writes: write to a temporary file beside the target, then rename.

A run that is interrupted leaves either the old file or the new one, never half of one.

The temporary file ``.NAME.<pid>.<token><suffix>`` is created exclusively
(``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600), so a file or symbolic link planted under its
name is never followed or overwritten; it is flushed to disk (``fsync``) before the rename,
and the folder after it, so a power cut cannot leave an empty file under the real name.
Temporaries left by a killed writer (its pid is gone and the file predates this process) are
removed when the next write to the same target starts. Errors (disk full, permission) name
the real output, not the hidden temporary.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "clean_stale_temps", "write_bytes", "write_json", "write_text"]

#: When this process started writing (module import): temporaries older than this, left by a
#: process that no longer exists, are stale.
_STARTED = time.time()
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or we cannot tell: keep it)
    return True


def _temp_pattern(name: str) -> re.Pattern[str]:
    # ours: .NAME.<pid>.<16 hex><suffix>; older versions: mkstemp's .NAME.<8 chars><suffix>[.tmp]
    return re.compile(
        rf"^\.{re.escape(name)}\.(?:(?P<pid>\d+)\.[0-9a-f]{{16}}(?:\.[^/]*)?|[a-z0-9_]{{8}}\.[^/]+)$"
    )


def clean_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of `target` left by killed writers; returns what was removed.

    A temporary is stale when the process that made it no longer runs (its pid is in the
    name) and it was last modified before this process started, so a live writer on another
    machine sharing the folder is left alone.
    """
    target = Path(target)
    pattern = _temp_pattern(target.name)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if st.st_mtime >= _STARTED:
            continue
        pid = m.group("pid")
        if pid is not None and (int(pid) == os.getpid() or _pid_alive(int(pid))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _create_exclusive(parent: Path, name: str, suffix: str) -> Path:
    for _ in range(100):
        path = parent / f".{name}.{os.getpid()}.{secrets.token_hex(8)}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(errno.EEXIST, "could not create a unique temporary file", str(parent))


def _renamed(exc: OSError, target: Path) -> OSError:
    """The same error, naming the real output instead of the hidden temporary."""
    new = type(exc)(exc.errno, exc.strerror or str(exc), str(target))
    return new if isinstance(new, OSError) else OSError(exc.errno, str(exc), str(target))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError:  # not possible on this platform (Windows): the rename is all we have
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a fresh temporary path beside `target`; on success rename it over `target`.

    The temporary name keeps the target's suffix (or `suffix`), so that libraries that
    infer the format from the name (numpy, matplotlib, pyarrow) still work. It is created
    empty and exclusively; the caller writes to it by name. The result gets the target's
    previous permissions, or the usual ones (0666 minus the umask) for a new file.
    """
    target = Path(target)
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        # Never replace a device (/dev/full, when run as root), a FIFO, socket or folder.
        raise OSError(
            errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
            "not a regular file; refusing to replace it",
            str(target),
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    try:
        work = _create_exclusive(
            target.parent, target.name, suffix if suffix is not None else target.suffix
        )
    except OSError as exc:
        raise _renamed(exc, target) from exc
    created = os.lstat(work)
    try:
        try:
            yield work
        except OSError as exc:
            # A full disk (no file name) or a failure on the temporary: name the output.
            if exc.filename is None or str(exc.filename) == str(work):
                raise _renamed(exc, target) from exc
            raise
        try:
            now = os.lstat(work)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, "nothing was written (the temporary file vanished)", str(target)
            ) from None
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            created.st_dev,
            created.st_ino,
        ):
            # Someone replaced our file (with a link, say) while it was being written.
            raise OSError(
                errno.EEXIST, "the temporary file was replaced during the write", str(target)
            )
        if now.st_size == 0 and (now.st_mtime_ns, now.st_ctime_ns) == (
            created.st_mtime_ns,
            created.st_ctime_ns,
        ):
            # Untouched: the caller wrote elsewhere (or nothing); keep the old file.
            raise FileNotFoundError(errno.ENOENT, "nothing was written", str(target))
        try:
            old = os.lstat(target)
            mode = stat.S_IMODE(old.st_mode) if stat.S_ISREG(old.st_mode) else None
        except FileNotFoundError:
            mode = None
        try:
            os.chmod(work, mode if mode is not None else 0o666 & ~_umask())
            _fsync_file(work)
            os.replace(work, target)
        except OSError as exc:
            raise _renamed(exc, target) from exc
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(work)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | _NOFOLLOW | _CLOEXEC)
        except OSError as exc:
            raise _renamed(exc, Path(target)) from exc
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
