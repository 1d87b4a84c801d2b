"""Cosine similarity building blocks (numpy only; no torch).

The paper's similarity is "the complement of the cosine distance", i.e. plain cosine
similarity, in [-1, 1] (in [0, 1] for non-negative embeddings).
"""

from __future__ import annotations

import numpy as np

__all__ = ["cosine_similarity", "normalize_rows"]


def normalize_rows(
    X: np.ndarray,
    *,
    out: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    block: int = 65536,
) -> np.ndarray:
    """L2-normalise rows in float32, blockwise so temporaries stay small.

    Parameters
    ----------
    X : ndarray of shape (n_images, n_dims)
        Rows with non-zero norm (validated by :func:`enrich.embeddings.check_vectors`).
    out : ndarray of shape (n_rows, n_dims), float32, optional
        Where to write; may be `X` itself when it is float32 and `rows` is None.
    rows : ndarray of int, optional
        Normalise only these rows, in this order: ``normalize_rows(X)[rows]`` without the
        full-size intermediate.

    Examples
    --------
    >>> normalize_rows(np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]], dtype=float32)
    >>> normalize_rows(np.array([[3.0, 4.0], [0.0, 2.0]]), rows=np.array([1]))
    array([[0., 1.]], dtype=float32)
    """
    n = len(X) if rows is None else len(rows)
    if out is None:
        out = np.empty((n, X.shape[1]), dtype=np.float32)
    for start in range(0, n, block):
        part = X[start : start + block] if rows is None else X[rows[start : start + block]]
        part = np.asarray(part, dtype=np.float32)  # (b, d)
        # squares in float32, their sum in float64: norms good to ~1e-7 relative
        norms = np.sqrt(np.add.reduce(part * part, axis=1, dtype=np.float64))
        out[start : start + block] = part / norms[:, None].astype(np.float32)
    return out


def cosine_similarity(A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
    """Dense cosine similarity matrix (float64); for small inputs and tests only.

    >>> cosine_similarity(np.array([[1.0, 0.0], [1.0, 1.0]])).round(3)
    array([[1.   , 0.707],
           [0.707, 1.   ]])
    """
    a = np.asarray(A, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    if B is None:
        return a @ a.T
    b = np.asarray(B, dtype=np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T
