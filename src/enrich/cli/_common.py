"""Helpers shared by the CLI commands: inputs, progress bars, output files."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrich.errors import EnrichError

if TYPE_CHECKING:
    import pandas as pd

    from enrich.embeddings import Embeddings

__all__ = [
    "add_input_arguments",
    "load_input",
    "progress_bar",
    "read_id_list",
    "write_csv",
]


def add_input_arguments(parser: argparse.ArgumentParser, *, multiple: bool = False) -> None:
    group = parser.add_argument_group("input (one of)")
    group.add_argument(
        "--embeddings",
        "-e",
        action="append" if multiple else "store",
        metavar="FILE",
        help=".npy of shape (N, d) (ids 0..N-1) or .npz with 'vectors' and 'ids'"
        + (" (repeat to compare datasets)" if multiple else ""),
    )
    group.add_argument(
        "--workspace",
        "-w",
        action="append" if multiple else "store",
        metavar="DIR",
        help="a workspace made by `enrich embed` (adds paths, patient and clip ids)",
    )


def load_input(
    embeddings: str | None, workspace: str | None
) -> tuple[Embeddings, pd.DataFrame | None, str]:
    """Load embeddings from a file or a workspace; returns (embeddings, manifest, name)."""
    from enrich.embeddings import load_embeddings

    if (embeddings is None) == (workspace is None):
        raise EnrichError("give exactly one of --embeddings FILE or --workspace DIR")
    if embeddings is not None:
        return load_embeddings(embeddings), None, Path(embeddings).stem
    from enrich.workspace import Workspace

    ws = Workspace(workspace)  # type: ignore[arg-type]
    emb = ws.embeddings()
    return emb, ws.manifest(), Path(str(workspace)).resolve().name


def read_id_list(path: str | Path) -> list[str]:
    """Ids (or paths) one per line; blank lines and '#' comments ignored. A CSV with an
    'id' (or 'path') column header is read by that column."""
    p = Path(path)
    if not p.is_file():
        raise EnrichError(f"{p}: no such file (expected a list of ids, one per line)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EnrichError(f"{p}: cannot read ids ({exc})") from None
    rows = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if rows and "," in rows[0]:
        header = [h.strip() for h in rows[0].split(",")]
        col = next((c for c in ("id", "path") if c in header), None)
        if col is None:
            raise EnrichError(f"{p}: CSV header {header} has no 'id' or 'path' column")
        k = header.index(col)
        rows = [r.split(",")[k].strip() for r in rows[1:]]
    if not rows:
        raise EnrichError(f"{p}: holds no ids")
    return rows


@contextlib.contextmanager
def progress_bar(total: int, desc: str, unit: str = "it") -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr that appears only for work that lasts over a second."""
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        delay=1.0,
        dynamic_ncols=True,
        leave=False,
        disable=not sys.stderr.isatty(),  # never redrawn into a log file
    )

    def update(k: int) -> None:
        bar.update(k)

    try:
        yield update
    finally:
        bar.close()


def write_csv(frame: pd.DataFrame, path: str | Path, **kwargs: Any) -> None:
    from enrich._atomic import atomic_path

    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, **kwargs)
