"""Embeddings travel with their ids.

An :class:`Embeddings` is ``ids`` (N,) strings plus ``vectors`` (N, d) float32. On disk it
is an ``.npz`` with ``ids`` and ``vectors``; a plain ``.npy`` of shape (N, d) is accepted
too, with ids ``"0".."N-1"``.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enrich._atomic import atomic_path
from enrich.errors import EnrichError, first_few

__all__ = [
    "Embeddings",
    "check_vectors",
    "fingerprint",
    "load_embeddings",
    "save_embeddings",
]


@dataclass(frozen=True)
class Embeddings:
    """Vectors with their ids.

    Parameters
    ----------
    ids : ndarray of shape (n_images,)
        Unique string ids, e.g. relative paths (``"a/b.dcm#12"`` for frame 12).
    vectors : ndarray of shape (n_images, n_dims)
        float32 embeddings.
    meta : dict
        Free-form provenance (embedder, seed, fingerprint).

    Examples
    --------
    >>> e = Embeddings(np.array(["a", "b"]), np.eye(2, dtype=np.float32))
    >>> len(e), e.dim
    (2, 2)
    """

    ids: np.ndarray
    vectors: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids).astype(str)
        vectors = np.asarray(self.vectors)
        if ids.ndim != 1 or vectors.ndim != 2 or len(ids) != len(vectors):
            raise EnrichError(
                f"ids of shape {ids.shape} do not match vectors of shape {vectors.shape}; "
                "expected ids (N,) and vectors (N, d)"
            )
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "vectors", vectors)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index_of(self, wanted: object) -> np.ndarray:
        """Positions of `wanted` ids; unknown ids are an error that lists them.

        >>> Embeddings(np.array(["a", "b"]), np.eye(2)).index_of(["b"])
        array([1])
        """
        wanted = np.asarray(wanted).astype(str).ravel()
        lookup = {k: i for i, k in enumerate(self.ids.tolist())}
        missing = [w for w in wanted.tolist() if w not in lookup]
        if missing:
            raise EnrichError(f"{len(missing)} id(s) not in the embeddings: {first_few(missing)}")
        return np.array([lookup[w] for w in wanted.tolist()], dtype=np.int64)


def check_vectors(X: object, *, ids: np.ndarray | None = None, name: str = "X") -> np.ndarray:
    """Validate an embedding matrix and return it as float32 C-contiguous.

    Rejects 1-D, ragged, empty, complex or non-numeric input, non-finite rows, rows a float32
    cannot hold (float64 values beyond ±3.4e38, or whose every value is below 1.4e-45) and
    zero-norm rows (cosine similarity is undefined for them), listing the first few
    offending ids. Any magnitude a float32 can hold is fine: norms are taken in float64.
    """
    try:
        arr = np.asarray(X)
    except ValueError as exc:  # ragged nested lists
        raise EnrichError(
            f"{name} is ragged: expected an (N, d) array of numbers ({exc})"
        ) from None
    if arr.dtype == object:
        raise EnrichError(f"{name} is ragged or not numeric: expected an (N, d) array of numbers")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise EnrichError(
            f"{name} has complex dtype {arr.dtype}: expected real numbers "
            "(take .real, .imag or abs() first, whichever the embedding means)"
        )
    if arr.ndim != 2:
        raise EnrichError(f"{name} has shape {arr.shape}: expected a 2-D (N, d) array")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise EnrichError(f"{name} has dtype {arr.dtype}: expected numbers")
    n, d = arr.shape
    if n < 2:
        raise EnrichError(f"{name} has N={n} rows: need at least 2 images")
    if d < 1:
        raise EnrichError(f"{name} has d={d} columns: expected at least 1")
    from enrich.similarity import row_norms  # numba: imported only when validating

    names = ids if ids is not None else np.arange(n)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        raise EnrichError(
            f"{name} has {int((~finite).sum())} row(s) with NaN or inf: "
            f"ids {first_few(names[~finite])}"
        )
    with np.errstate(over="ignore", under="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    too_big = ~np.isfinite(out).all(axis=1)
    if too_big.any():
        raise EnrichError(
            f"{name} has {int(too_big.sum())} row(s) with values beyond the float32 range "
            f"(|x| > 3.4e38) that embeddings are kept in: ids {first_few(names[too_big])}; "
            "rescale them"
        )
    norms = row_norms(out)  # float64: no overflow or underflow for any float32 row
    zero = norms == 0
    if zero.any():
        vanished = zero & (arr != 0).any(axis=1)
        if vanished.any():
            raise EnrichError(
                f"{name} has {int(vanished.sum())} row(s) whose values are all below the "
                f"float32 range (|x| < 1.4e-45) that embeddings are kept in: ids "
                f"{first_few(names[vanished])}; rescale them"
            )
        raise EnrichError(
            f"{name} has {int(zero.sum())} zero-norm row(s), for which cosine similarity is "
            f"undefined: ids {first_few(names[zero])}"
        )
    return out


def load_embeddings(path: str | os.PathLike[str]) -> Embeddings:
    """Read ``.npy`` (N, d) or ``.npz`` with ``vectors`` and ``ids``; validate ids.

    Raises :class:`EnrichError` for a missing or unreadable file, a wrong layout or
    duplicate ids. Vectors are validated later, by the computation that uses them.
    """
    path = Path(path)
    if not path.exists():
        raise EnrichError(f"{path}: no such file")
    if path.is_dir():
        if (path / "zarr.json").is_file():  # a chunked store (enrich-imaging[dask])
            from enrich.distributed.store import load_zarr

            return load_zarr(path)
        raise EnrichError(f"{path}: is a folder, expected a .npy or .npz file or a Zarr store")
    try:
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
                if not {"vectors", "ids"} <= keys:
                    raise EnrichError(
                        f"{path}: .npz has arrays {sorted(keys)}; expected 'vectors' and 'ids'"
                    )
                vectors, ids = data["vectors"], data["ids"]
        else:
            vectors, ids = np.load(path, allow_pickle=False), None
    except EnrichError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        if "Object arrays" in str(exc):
            raise EnrichError(
                f"{path}: holds a ragged or object array; expected a numeric (N, d) array"
            ) from None
        raise EnrichError(
            f"{path}: cannot read embeddings ({exc}); "
            "expected .npy (N, d) or .npz with 'ids' and 'vectors'"
        ) from None
    meta = {"source": str(path)}
    if ids is None:
        if vectors.ndim < 1:
            raise EnrichError(f"{path}: holds a scalar, expected an (N, d) array")
        ids = np.arange(len(vectors)).astype(str)
    ids = np.asarray(ids).astype(str)
    if ids.ndim != 1:
        raise EnrichError(f"{path}: ids have shape {ids.shape}, expected (N,)")
    if vectors.ndim != 2:
        raise EnrichError(
            f"{path}: vectors have shape {vectors.shape}, expected a 2-D (N, d) array"
        )
    if np.issubdtype(vectors.dtype, np.complexfloating):
        raise EnrichError(f"{path}: vectors are complex ({vectors.dtype}); expected real numbers")
    if len(ids) != len(vectors):
        raise EnrichError(f"{path}: {len(ids)} ids for {len(vectors)} vectors")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise EnrichError(f"{path}: duplicate ids: {first_few(uniq[counts > 1])}")
    return Embeddings(ids=ids, vectors=vectors, meta=meta)


def save_embeddings(path: str | os.PathLike[str], emb: Embeddings) -> None:
    """Write ``ids`` and ``vectors`` to an ``.npz`` atomically; refuses duplicate ids."""
    uniq, counts = np.unique(emb.ids, return_counts=True)
    if (counts > 1).any():
        raise EnrichError(f"refusing to save duplicate ids: {first_few(uniq[counts > 1])}")
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, ids=emb.ids, vectors=np.asarray(emb.vectors, dtype=np.float32))


def fingerprint(vectors: np.ndarray, ids: np.ndarray | None = None) -> str:
    """A short content hash of the vectors (and ids) recorded beside every output.

    >>> fingerprint(np.zeros((2, 2), np.float32))[:7]
    'sha256:'
    """
    h = hashlib.sha256()
    arr = np.ascontiguousarray(vectors)
    h.update(str((arr.shape, arr.dtype.str)).encode())
    h.update(arr.tobytes())
    if ids is not None:
        h.update("\0".join(np.asarray(ids).astype(str).tolist()).encode())
    return "sha256:" + h.hexdigest()[:16]
