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

__all__ = [
    "StoreInput",
    "StoreRows",
    "open_store_input",
    "read_checked",
    "read_rows",
    "read_some",
    "source_shape",
]


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

    @property
    def shape(self) -> tuple[int, int]:
        """(N, d), as an array's."""
        return self.n, self.d


@dataclass(frozen=True)
class StoreInput:
    """A command's Zarr store input, opened for the workers: the driver holds only the ids.

    Attributes
    ----------
    rows : StoreRows
        What the workers read (also as ``vectors``, where code takes embeddings).
    ids : ndarray of shape (n_images,), str
    fingerprint : str
        The content hash recorded in the store when it was written (the same as
        :func:`enrich.embeddings.fingerprint` of its vectors and ids).
    name : str
        The dataset's name in messages and outputs.
    """

    rows: StoreRows
    ids: np.ndarray
    fingerprint: str
    name: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def vectors(self) -> StoreRows:
        return self.rows

    def index_of(self, wanted: object) -> np.ndarray:
        """Positions of `wanted` ids, as :meth:`enrich.embeddings.Embeddings.index_of`."""
        from enrich.embeddings import Embeddings

        return Embeddings.index_of(self, wanted)  # type: ignore[arg-type]  # uses .ids only


def open_store_input(kind: str, path: str) -> StoreInput | None:
    """A Zarr store input (``kind`` "embeddings": ``-e STORE``; "workspace": a workspace's
    ``embeddings.zarr``), opened for the workers to read: only its ids are read here.

    None when the input is not a store (or a workspace that also holds ``embeddings.npz``,
    or whose store does not hold exactly its manifest's images in order, or a store without
    a recorded fingerprint): the command then loads it as before."""
    from pathlib import Path

    from enrich.distributed.store import is_zarr_store, open_zarr

    if kind == "embeddings":
        if not is_zarr_store(path):
            return None
        store, name = Path(path), Path(path).stem
    else:
        from enrich.workspace import Workspace

        ws = Workspace(path)
        store, name = ws.path / "embeddings.zarr", Path(path).resolve().name
        if ws.embeddings_path.is_file() or not is_zarr_store(store):
            return None
    lazy = open_zarr(store)
    if kind == "workspace" and ws.has_manifest():
        if not np.array_equal(ws.manifest()["id"].to_numpy(dtype=str), lazy.ids):
            return None
    fp = lazy.meta.get("stored_fingerprint")
    if fp is None:
        return None
    return StoreInput(StoreRows.open(str(store), lazy), lazy.ids, str(fp), name)


@functools.lru_cache(maxsize=4)
def _group(path: str) -> Any:
    from enrich.distributed.store import _zarr

    return _zarr().open_group(path, mode="r")


def _checked(raw: np.ndarray, ids: Any, where: str) -> np.ndarray:
    """`raw` as float32 rows, checked as :func:`enrich.embeddings.check_vectors` checks them,
    or an EnrichError naming the bad rows' ids (`ids()` is read only then)."""
    raw = np.asarray(raw)
    if raw.dtype != np.float32:  # a store written by another tool: every check, ids read
        from enrich.embeddings import check_vectors

        names = np.asarray(ids().tolist(), dtype=str)
        twice = len(raw) == 1  # check_vectors wants N >= 2
        out = check_vectors(
            np.concatenate([raw, raw]) if twice else raw,
            ids=np.concatenate([names, names]) if twice else names,
            name=where,
        )
        return out[: len(raw)]
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
    return np.ascontiguousarray(raw)


def _checked_unit(raw: np.ndarray, ids: Any, where: str) -> np.ndarray:
    """Unit float32 rows of `raw`, or an EnrichError naming the bad rows' ids."""
    return normalize_rows(_checked(raw, ids, where))


def read_checked(source: StoreRows, a: int, b: int) -> np.ndarray:
    """Rows ``a:b`` of the store as stored (float32, not normalised), checked: NaN, inf or
    zero rows are an EnrichError naming their ids."""
    group = _group(source.path)
    raw = group["vectors"][a:b]
    return _checked(raw, lambda: group["ids"][a:b], f"embeddings {source.path}")


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
