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
    "read_id_lines",
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
    """Ids (or paths) from a text or CSV file, in file order.

    The file is read as CSV (quoted cells may hold commas; a UTF-8 BOM is dropped). When the
    first row names an ``id`` (or else a ``path``) column, that row is the header and the
    column is read; otherwise the file must have one column, one id per line. Blank lines are
    skipped; there is no comment syntax (an id may begin with ``#``). Cells escaped by
    enrich's CSV writer (``'=...``) are read back unescaped, so ``--labeled order.csv`` works.

    Raises
    ------
    EnrichError
        No such file, no ids, several columns without an ``id``/``path`` header, or an id
        that repeats (naming it and both line numbers).
    """
    return [value for _, value in read_id_lines(path)]


def read_id_lines(path: str | Path) -> list[tuple[int, str]]:
    """:func:`read_id_list` with each id's line number (1-based), for error messages."""
    import csv
    import io

    from enrich._csv import unescape_cell

    p = Path(path)
    if not p.is_file():
        raise EnrichError(f"{p}: no such file (expected a list of ids, one per line)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnrichError(f"{p}: cannot read ids ({exc})") from None
    try:
        rows = [
            (reader.line_num, row)
            for reader in [csv.reader(io.StringIO(text, newline=""))]
            for row in reader
        ]
    except csv.Error as exc:
        raise EnrichError(f"{p}: not a readable list of ids ({exc})") from None
    rows = [(n, [c.strip() for c in row]) for n, row in rows if any(c.strip() for c in row)]
    col = 0
    if rows:
        header = [h.lower() for h in rows[0][1]]
        name = next((c for c in ("id", "path") if c in header), None)
        if name is not None:
            col = header.index(name)
            rows = rows[1:]
        elif len(header) > 1:
            raise EnrichError(
                f"{p}: line {rows[0][0]} has {len(header)} columns but no 'id' or 'path' "
                "header; give one id per line, or a CSV with an 'id' (or 'path') column"
            )
    out: list[tuple[int, str]] = []
    first: dict[str, int] = {}
    for n, row in rows:
        value = unescape_cell(row[col]) if col < len(row) else ""
        if not value:
            continue
        if value in first:
            raise EnrichError(f"{p}: line {n}: id {value!r} repeats line {first[value]}")
        first[value] = n
        out.append((n, value))
    if not out:
        raise EnrichError(f"{p}: holds no ids")
    return out


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
    """Write atomically, with spreadsheet formula cells escaped (:mod:`enrich._csv`)."""
    from enrich._csv import write_csv as _write

    _write(frame, path, **kwargs)
