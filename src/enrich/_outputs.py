"""Checks every writing command makes before it writes: outputs and seeds.

:func:`check_outputs` refuses an output that

- is a symbolic link (enrich replaces its outputs: the link would silently stop pointing
  where it did, or a planted link would aim the write elsewhere), a folder, a device, a FIFO
  or a socket: anything but a regular file or nothing;
- is the same file as one of the command's inputs (``-e e.npy -o e.npy``);
- is a file of a workspace (``workspace.json``, ``manifest.parquet``, ``embeddings.npz``,
  ``embeddings.json``, ``skipped.csv``, anything under ``model/``): only ``runs/`` and other
  new names are free;
- is the same file as another output of the same command (``rank --out x.json`` and its
  sidecar ``x.json``).

Examples
--------
>>> check_seed(3)
3
>>> check_seed(-1)
Traceback (most recent call last):
...
enrich.errors.EnrichError: seed=-1: expected a whole number >= 0
"""

from __future__ import annotations

import numbers
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from enrich.errors import EnrichError

__all__ = ["WORKSPACE_FILES", "check_output_dir", "check_outputs", "check_seed"]

#: Names at the top of a workspace that no command's --out may replace.
WORKSPACE_FILES = frozenset(
    {
        "workspace.json",
        "manifest.parquet",
        "embeddings.npz",
        "embeddings.json",
        "skipped.csv",
        "model",
        ".enrich.lock",
    }
)
_MARKER = "workspace.json"


def check_seed(seed: object, *, name: str = "seed") -> int | None:
    """A seed is None or a whole number >= 0 (what ``numpy.random.default_rng`` accepts).

    Raises
    ------
    EnrichError
        Naming `name` and the value.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        sep = " " if name.startswith("-") else "="
        raise EnrichError(f"{name}{sep}{seed!r}: expected a whole number >= 0")
    return int(seed)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _workspace_part(path: Path) -> tuple[Path, str] | None:
    """(workspace, reserved name) when `path` is or lies under a workspace's own files."""
    for ws in path.parents:
        if (ws / _MARKER).is_file():
            rel = path.relative_to(ws).parts
            if rel and rel[0] in WORKSPACE_FILES:
                return ws, rel[0]
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_outputs(
    outputs: Mapping[str, str | os.PathLike[str]],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    flag: str = "--out",
) -> None:
    """Refuse outputs that would replace something they must not (see the module doc).

    Parameters
    ----------
    outputs : mapping of str to path
        What each output is (for messages: ``"the order"``, ``"its JSON sidecar"``) → path.
    inputs : paths
        The command's input files (None entries are ignored).
    flag : str
        The option the user gave, named in the messages.

    Raises
    ------
    EnrichError
        One line naming the output and what it would replace.
    """
    seen: dict[Path, str] = {}
    ins = [Path(p) for p in inputs if p is not None]
    for what, raw in outputs.items():
        path = Path(raw)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise EnrichError(f"{flag} {path}: cannot check this path ({exc.strerror})") from None
        if st is not None:
            if stat.S_ISLNK(st.st_mode):
                raise EnrichError(
                    f"{flag} {path}: {what} would replace a symbolic link (to "
                    f"{os.readlink(path)}); give the real path, or remove the link"
                )
            if not stat.S_ISREG(st.st_mode):
                raise EnrichError(
                    f"{flag} {path}: is {_kind(st.st_mode)}; {what} must be a regular file"
                )
        resolved = path.parent.resolve() / path.name
        for inp in ins:
            if inp.exists() and st is not None and _same(path, inp):
                raise EnrichError(
                    f"{flag} {path}: is also the input {inp}; writing {what} there would "
                    "destroy it, choose another file"
                )
        hit = _workspace_part(resolved)
        if hit is not None:
            ws, name = hit
            raise EnrichError(
                f"{flag} {path}: is the workspace's own {name} ({ws}); write {what} outside "
                f"it or under {ws / 'runs'}"
            )
        if resolved in seen:
            raise EnrichError(
                f"{flag} {path}: {what} and {seen[resolved]} would be the same file; "
                "choose another name"
            )
        seen[resolved] = what


def check_output_dir(folder: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """An output folder must be a folder (or not exist yet), and not a workspace's own.

    A workspace's root is refused too: outputs go in ``runs/`` or elsewhere.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise EnrichError(f"{flag} {path}: is a file; expected a folder")
    resolved = path.resolve()
    if (resolved / _MARKER).is_file():
        raise EnrichError(
            f"{flag} {path}: is a workspace; choose a folder under {path / 'runs'} or elsewhere"
        )
    hit = _workspace_part(resolved)
    if hit is not None:
        ws, name = hit
        raise EnrichError(
            f"{flag} {path}: lies in the workspace's own {name} ({ws}); choose a folder under "
            f"{ws / 'runs'} or elsewhere"
        )
    return path
