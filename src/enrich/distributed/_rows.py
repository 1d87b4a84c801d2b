"""Where a worker reads its rows: the driver's array (scattered once) or the Zarr store itself.

With a Zarr store (``--embeddings STORE`` or a workspace's ``embeddings.zarr``) the driver
reads only the ids; each worker opens the store and reads the row ranges its tasks need,
validates them (finite, non-zero) and L2-normalises them as :func:`enrich.similarity.
normalize_rows` does, row by row, so the unit rows are the same bits as the driver's would be.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from enrich.errors import EnrichError, first_few
from enrich.similarity import normalize_rows, row_norms

__all__ = ["StoreRows", "read_rows", "read_some", "source_shape"]


@dataclass(frozen=True)
class StoreRows:
    """A Zarr embeddings store, read by rows on the workers (see :mod:`enrich.distributed.store`).

    Attributes
    ----------
    path : str
        The store folder; the workers must see it at this path (a shared file system).
    n, d : int
        Its shape.
    chunk_rows : int
        Rows per Zarr chunk (tasks read whole chunks where they can).
    """

    path: str
    n: int
    d: int
    chunk_rows: int

    @classmethod
    def open(cls, path: str, lazy: Any = None) -> StoreRows:
        """Check the store's layout on the driver (ids only are read), or take the already
        opened `lazy` (:class:`enrich.distributed.store.LazyEmbeddings`)."""
        from enrich.distributed.store import open_zarr

        lazy = lazy if lazy is not None else open_zarr(path)
        n, d = lazy.vectors.shape
        if n < 2:
            raise EnrichError(f"{path} has N={n} rows: need at least 2 images")
        return cls(str(path), int(n), int(d), int(lazy.vectors.chunks[0]))


@functools.lru_cache(maxsize=4)
def _group(path: str) -> Any:
    from enrich.distributed.store import _zarr

    return _zarr().open_group(path, mode="r")


def _checked_unit(raw: np.ndarray, ids: Any, where: str) -> np.ndarray:
    """Unit float32 rows of `raw`, or an EnrichError naming the bad rows' ids."""
    raw = np.asarray(raw)
    bad = ~np.isfinite(raw).all(axis=1)
    if bad.any():
        names = np.asarray(ids()[bad].tolist(), dtype=str)
        raise EnrichError(
            f"{where} has {int(bad.sum())} row(s) with NaN or inf: ids {first_few(names)}"
        )
    zero = row_norms(raw) == 0
    if zero.any():
        names = np.asarray(ids()[zero].tolist(), dtype=str)
        raise EnrichError(
            f"{where} has {int(zero.sum())} zero-norm row(s), for which cosine similarity is "
            f"undefined: ids {first_few(names)}"
        )
    return normalize_rows(raw)


def read_rows(source: Any, a: int, b: int) -> np.ndarray:
    """Unit float32 rows ``a:b`` of `source` (unit rows in memory, or a :class:`StoreRows`)."""
    if not isinstance(source, StoreRows):
        return np.asarray(source[a:b])
    group = _group(source.path)
    raw = group["vectors"][a:b]
    return _checked_unit(raw, lambda: group["ids"][a:b], f"embeddings {source.path}")


def read_some(source: Any, rows: np.ndarray) -> np.ndarray:
    """Unit float32 rows at the (sorted) positions `rows`."""
    rows = np.asarray(rows, dtype=np.int64)
    if not isinstance(source, StoreRows):
        return np.ascontiguousarray(source[rows])
    if len(rows) == 0:
        return np.empty((0, source.d), dtype=np.float32)
    group = _group(source.path)
    raw = group["vectors"].get_orthogonal_selection((rows, slice(None)))
    ids = lambda: group["ids"].get_orthogonal_selection(rows)  # noqa: E731
    return _checked_unit(raw, ids, f"embeddings {source.path}")


def source_shape(source: Any) -> tuple[int, int]:
    """(N, d) of an array or a store."""
    if isinstance(source, StoreRows):
        return source.n, source.d
    return int(source.shape[0]), int(source.shape[1])


def blocks(source: Any, block: int) -> Any:
    """``(j0, unit rows)`` blocks covering every row once."""
    n, _ = source_shape(source)
    for j0 in range(0, n, block):
        yield j0, read_rows(source, j0, min(n, j0 + block))
