"""CSV files that are safe to open in a spreadsheet.

File names, DICOM PatientIDs and manifest values are user data: a cell such as
``=HYPERLINK("http://evil", "x")`` or ``=cmd|' /C calc'!A0`` would run as a formula in Excel or
LibreOffice. Every CSV enrich writes goes through :func:`write_csv`, which prefixes a single
quote to text cells that begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
(OWASP's advice), and to text cells that begin with a quote followed by one of those, so
:func:`unescape_cell` undoes it exactly. Numeric columns are written as numbers, negative ones
included. Reading our own CSVs back (:func:`read_csv`, ``rank --labeled order.csv``) undoes the
escaping.

Examples
--------
>>> escape_cell("=1+2"), escape_cell("-3"), escape_cell("a.png"), escape_cell(-3)
("'=1+2", "'-3", 'a.png', -3)
>>> unescape_cell(escape_cell("'=x")) == "'=x"
True
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMULA_PREFIXES",
    "escape_cell",
    "escape_frame",
    "read_csv",
    "unescape_cell",
    "unescape_frame",
    "write_csv",
]

#: A text cell starting with one of these is read as a formula by spreadsheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_AFTER_QUOTE = (*FORMULA_PREFIXES, "'")


def escape_cell(value: Any) -> Any:
    """Prefix ``'`` to a text cell a spreadsheet would run as a formula; others unchanged."""
    if isinstance(value, str) and value:
        if value[0] in FORMULA_PREFIXES or (value[0] == "'" and value[1:2] in _AFTER_QUOTE):
            return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """Undo :func:`escape_cell` (a ``'`` followed by a formula character or a quote)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1] in _AFTER_QUOTE:
        return value[1:]
    return value


def _is_text(col: pd.Series) -> bool:
    import pandas as pd

    return bool(
        pd.api.types.is_object_dtype(col.dtype)
        or pd.api.types.is_string_dtype(col.dtype)
        or isinstance(col.dtype, pd.CategoricalDtype)
    )


def escape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with every text cell escaped (numeric columns untouched), and the header too."""
    out = frame.copy()
    for col in out.columns:
        if _is_text(out[col]):
            out[col] = out[col].astype(object).map(escape_cell)
    out.columns = [escape_cell(c) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """Write `frame` (no index) atomically, with formula cells escaped."""
    from enrich._atomic import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        escape_frame(frame).to_csv(tmp, index=False, **kwargs)


def unescape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`escape_frame` on a table read back (text cells and the header)."""
    df = frame.copy()
    for col in df.columns:
        if _is_text(df[col]):
            df[col] = df[col].map(unescape_cell)
    df.columns = [unescape_cell(c) for c in df.columns]
    return df


def read_csv(path: str | os.PathLike[str], **kwargs: Any) -> pd.DataFrame:
    """Read a CSV that :func:`write_csv` wrote, undoing the escaping of its text cells."""
    import pandas as pd

    return unescape_frame(pd.read_csv(path, **kwargs))
