"""Embeddings as a chunked Zarr store: ids beside the vectors, chunked by rows.

A store is a Zarr (v3) group, a folder such as ``embeddings.zarr/``, holding

- ``vectors``: float32 array of shape (N, d), chunked by rows (``chunk_rows`` x d);
- ``ids``: string array of shape (N,), chunked the same way;
- attributes ``format: "enrich-embeddings"``, ``version: 1``, ``n_images``, ``dim`` and
  ``fingerprint`` (the same content hash as beside every output).

Any command that takes ``--embeddings FILE`` takes a store too (``load_embeddings`` hands a
Zarr folder to :func:`load_zarr`). :func:`open_zarr` opens it lazily: only the ids are read,
and the vectors stay on disk as a ``zarr.Array`` to be read by rows, or as a Dask array with
:func:`to_dask`, so workers can read their own rows in parallel. ``.npz``/``.npy`` and stores
convert both ways, losslessly (``enrich convert``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enrich.embeddings import Embeddings, fingerprint
from enrich.errors import EnrichError, MissingExtraError, first_few

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "FORMAT",
    "LazyEmbeddings",
    "is_zarr_store",
    "load_zarr",
    "open_zarr",
    "save_zarr",
    "to_dask",
]

FORMAT = "enrich-embeddings"
VERSION = 1
# 65,536 rows x 128 float32 = 32 MiB per chunk: large enough for fast reads, small enough
# for a worker to hold many.
DEFAULT_CHUNK_ROWS = 65536


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise MissingExtraError("zarr", "dask") from None
    return zarr


def is_zarr_store(path: str | os.PathLike[str]) -> bool:
    """True for a folder that is a Zarr v3 group (has ``zarr.json``)."""
    p = Path(path)
    return p.is_dir() and (p / "zarr.json").is_file()


@dataclass(frozen=True)
class LazyEmbeddings:
    """An opened store: ids in memory, vectors on disk.

    Attributes
    ----------
    ids : ndarray of shape (n_images,), str
    vectors : zarr.Array of shape (n_images, n_dims), float32
        Read rows with ``vectors[a:b]``; nothing is read until then.
    meta : dict
    """

    ids: np.ndarray
    vectors: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self) -> Embeddings:
        """Read every vector into memory."""
        return Embeddings(self.ids, np.asarray(self.vectors[:]), dict(self.meta))


def save_zarr(
    path: str | os.PathLike[str],
    emb: Embeddings,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> None:
    """Write `emb` as a store, atomically (a complete store or the previous one, never half).

    Parameters
    ----------
    path : path of the store folder, e.g. ``embeddings.zarr``
    emb : Embeddings
        Unique ids; vectors are stored as float32.
    chunk_rows : int
        Rows per chunk.
    """
    zarr = _zarr()
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise EnrichError(f"chunk_rows={chunk_rows!r}: expected a whole number >= 1")
    ids = np.asarray(emb.ids).astype(str)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise EnrichError(f"refusing to save duplicate ids: {first_few(uniq[counts > 1])}")
    vectors = np.ascontiguousarray(emb.vectors, dtype=np.float32)
    target = Path(path)
    if target.exists() and not is_zarr_store(target):
        raise EnrichError(f"{target}: exists and is not a Zarr store; refusing to replace it")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        group = zarr.open_group(str(tmp), mode="w")
        rows = max(1, min(chunk_rows, len(ids)))
        v = group.create_array(
            "vectors", shape=vectors.shape, dtype="float32", chunks=(rows, vectors.shape[1])
        )
        v[:] = vectors
        i = group.create_array("ids", shape=ids.shape, dtype=str, chunks=(rows,))
        i[:] = ids
        group.attrs.update(
            {
                "format": FORMAT,
                "version": VERSION,
                "n_images": len(ids),
                "dim": int(vectors.shape[1]),
                "fingerprint": fingerprint(vectors, ids),
            }
        )
        replace_store(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_store(tmp: Path, target: Path) -> None:
    """Put the finished store `tmp` at `target`: the old store (if any) is moved aside, the
    new one renamed into place, then the old one removed, so `target` is never half-written."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def open_zarr(path: str | os.PathLike[str]) -> LazyEmbeddings:
    """Open a store lazily: read its ids and check its layout; vectors stay on disk."""
    zarr = _zarr()
    p = Path(path)
    if not is_zarr_store(p):
        raise EnrichError(f"{p}: not a Zarr store (expected a folder with zarr.json)")
    try:
        group = zarr.open_group(str(p), mode="r")
        keys = set(group.array_keys())
        if not {"vectors", "ids"} <= keys:
            raise EnrichError(
                f"{p}: Zarr store has arrays {sorted(keys)}; expected 'vectors' and 'ids'"
            )
        vectors = group["vectors"]
        # numpy's variable-width StringDType -> fixed-width str, as .npz ids are
        ids = np.asarray(group["ids"][:].tolist(), dtype=str).reshape(-1)
        attrs = dict(group.attrs)
    except EnrichError:
        raise
    except Exception as exc:  # zarr raises many kinds for a damaged store
        reason = f"{type(exc).__name__}: {exc}"
        raise EnrichError(f"{p}: cannot read the Zarr store ({reason})") from None
    if ids.ndim != 1:
        raise EnrichError(f"{p}: ids have shape {ids.shape}, expected (N,)")
    if len(vectors.shape) != 2:
        raise EnrichError(f"{p}: vectors have shape {vectors.shape}, expected (N, d)")
    if len(ids) != vectors.shape[0]:
        raise EnrichError(f"{p}: {len(ids)} ids for {vectors.shape[0]} vectors")
    if not np.issubdtype(np.dtype(str(vectors.dtype)), np.number):
        raise EnrichError(f"{p}: vectors have dtype {vectors.dtype}, expected float32")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise EnrichError(f"{p}: duplicate ids: {first_few(uniq[counts > 1])}")
    meta = {"source": str(p), "format": "zarr", "chunk_rows": int(vectors.chunks[0])}
    if "fingerprint" in attrs:
        meta["stored_fingerprint"] = attrs["fingerprint"]
    return LazyEmbeddings(ids=ids, vectors=vectors, meta=meta)


def load_zarr(path: str | os.PathLike[str]) -> Embeddings:
    """Read a store into memory (what every command does with ``--embeddings STORE``)."""
    return open_zarr(path).load()


def to_dask(path: str | os.PathLike[str]) -> Any:
    """The store's vectors as a Dask array, one block per Zarr chunk of rows (lazy)."""
    try:
        import dask.array as da
    except ImportError:
        raise MissingExtraError("dask", "dask") from None
    lazy = open_zarr(path)
    return da.from_zarr(lazy.vectors)
