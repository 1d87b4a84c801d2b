"""The append-only results table of a benchmark run (``results.csv``).

One row per trained model, appended (write, flush, fsync) as soon as the model finishes, so a
killed run loses at most the models in flight. A torn last line (the process died mid-write)
is cut off when the log is reopened. Re-running skips the (strategy, init, size, model) keys
already present.

Examples
--------
>>> import tempfile, pathlib
>>> log = ResultsLog(pathlib.Path(tempfile.mkdtemp()) / "results.csv")
>>> log.append({"strategy": "enrich", "init": 0, "size": 10, "model": 0, "value": 0.9})
>>> sorted(log.done())
[('enrich', 0, 10, 0)]
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrich._csv import escape_cell
from enrich.errors import EnrichError, first_few

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EXTRA_COLUMNS",
    "RESULT_COLUMNS",
    "DuplicateResultsWarning",
    "ResultsLog",
    "drop_duplicate_models",
    "result_key",
]

#: The contract of ``docs/architecture.md``, in order.
RESULT_COLUMNS = (
    "strategy",
    "init",
    "size",
    "fraction",
    "model",
    "seed",
    "metric",
    "value",
    "status",
    "error",
    "wall_s",
)
#: Extra provenance per model: epochs run, best epoch (early stopping), final train loss,
#: the validation loss at the kept weights, device, and the process CPU seconds (a measure
#: of cost that does not depend on how busy the machine was).
EXTRA_COLUMNS = ("epochs", "best_epoch", "train_loss", "val_loss", "device", "cpu_s")
COLUMNS = RESULT_COLUMNS + EXTRA_COLUMNS

Key = tuple[str, int, int, int]


def result_key(row: Mapping[str, Any]) -> Key:
    """The identity of a trained model: (strategy, init, size, model)."""
    return (str(row["strategy"]), int(row["init"]), int(row["size"]), int(row["model"]))


class DuplicateResultsWarning(UserWarning):
    """A results table holds the same model more than once (two runs appended to it)."""


#: What makes a row one trained model; a repeat is the same model recorded twice.
MODEL_KEY = ("strategy", "init", "size", "model", "seed", "metric")


def drop_duplicate_models(table: pd.DataFrame, *, source: str = "results") -> pd.DataFrame:
    """Keep one row per (strategy, init, size, model, seed, metric), warning on repeats.

    Two runs writing one table (before runs were locked) recorded every model twice; counted
    as independent models they would double n and shrink the spread. The first ``ok`` row of
    each model is kept (else its first row), in table order.

    Examples
    --------
    >>> import pandas as pd, warnings
    >>> t = pd.DataFrame({"strategy": ["enrich"] * 2, "init": 0, "size": 5, "model": 0,
    ...                   "seed": 7, "status": "ok", "value": [0.8, 0.8]})
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     len(drop_duplicate_models(t))
    1
    """
    import warnings

    key = [c for c in MODEL_KEY if c in table.columns]
    if not {"strategy", "size"} <= set(key):
        return table
    failed = (
        (table["status"].astype(str) != "ok")
        if "status" in table.columns
        else table["strategy"].map(lambda _: False)
    )
    order = failed.astype(int).sort_values(kind="stable").index
    keep = table.loc[order].drop_duplicates(subset=key, keep="first").index
    if len(keep) == len(table):
        return table
    dup = table.loc[table.index.difference(keep)]
    names = [
        "/".join(str(r[c]) for c in key) for r in dup.drop_duplicates(subset=key).to_dict("records")
    ]
    warnings.warn(
        f"{source}: {len(dup)} row(s) repeat a model already recorded ({'/'.join(key)}: "
        f"{first_few(names, 3)}), as when two runs wrote the same folder; each model is "
        "counted once",
        DuplicateResultsWarning,
        stacklevel=2,
    )
    return table.loc[table.index.isin(keep)]


def _one_line(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):  # an error message may quote a file named '=cmd|...'
        return escape_cell(" ".join(value.split()))
    return " ".join(str(value).split())


class ResultsLog:
    """Append-only CSV of results with crash-safe appends and resume.

    Parameters
    ----------
    path : path-like
        The ``results.csv``; created with a header when missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._done: set[Key] = set()
        self.n_repaired = 0
        self._open()

    def _open(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                f.write(",".join(COLUMNS) + "\n")
                f.flush()
                os.fsync(f.fileno())
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            # The last append was torn: keep only whole lines.
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            self.n_repaired = 1
            data = data[:cut]
        text = data.decode("utf-8", errors="replace")
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                f.write(",".join(COLUMNS) + "\n")
            return
        header = rows[0]
        if tuple(header[: len(RESULT_COLUMNS)]) != RESULT_COLUMNS:
            raise EnrichError(
                f"{self.path}: not a results table written by enrich benchmark (header "
                f"{','.join(header[:4])}...); use a new --out folder"
            )
        self._header = header
        for fields in rows[1:]:
            if len(fields) != len(header):
                continue
            rec = dict(zip(header, fields, strict=True))
            try:
                self._done.add(result_key(rec))
            except (KeyError, ValueError):
                continue

    def drop_failed(self) -> int:
        """Rewrite the table (atomically) without its ``failed`` rows, so they train again.

        Returns the number of rows dropped.
        """
        from enrich._atomic import atomic_path

        text = self.path.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
        header, body = rows[0], rows[1:]
        status = header.index("status")
        keep = [r for r in body if len(r) == len(header) and r[status] != "failed"]
        dropped = len(body) - len(keep)
        if dropped:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows([header, *keep])
            with atomic_path(self.path, suffix=".csv") as tmp:
                tmp.write_text(buf.getvalue(), encoding="utf-8")
            self._done = {result_key(dict(zip(header, r, strict=True))) for r in keep}
        return dropped

    def done(self) -> set[Key]:
        """Keys already recorded (ok or failed)."""
        return set(self._done)

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row and make it durable (flush + fsync) before returning."""
        buf = io.StringIO()
        header = getattr(self, "_header", list(COLUMNS))
        csv.writer(buf, lineterminator="\n").writerow([_one_line(row.get(c)) for c in header])
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self._done.add(result_key(row))
