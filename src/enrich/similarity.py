"""Cosine similarity building blocks (numpy and numba; no torch).

The paper's similarity is "the complement of the cosine distance", i.e. plain cosine
similarity, in [-1, 1] (in [0, 1] for non-negative embeddings).

**Exact ties on every CPU.** Fast paths compute similarities with float32 BLAS, whose rounding
depends on the CPU and its kernels (which row of a tile an image falls on, AVX2 or AVX-512).
Every decision that can hinge on rounding (which image is nearest, which is picked next,
whether a pair reaches a threshold) is instead taken on the *reference similarity*
:func:`cosine_at`: the float64 cosine of two unit rows, computed by one fixed sequence of
IEEE operations (eight interleaved partial sums, no fused multiply-add, no reassociation), so
it gives the same bits on every CPU (a test checks the compiled code against that sequence).
A float32 value is only used to rule a candidate out, with a proven margin
(:func:`float32_error`). Identical rows therefore always tie exactly, and ties go to the lowest
index everywhere.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "cosine_at",
    "cosine_similarity",
    "float32_error",
    "normalize_rows",
    "row_norms",
    "row_sqnorms",
]


# No fastmath: the compiler may not reorder the sum or fuse multiply and add, so the result is
# one IEEE-defined value; eight independent partial sums still let it use SIMD registers.
@numba.njit(cache=True, nogil=True)
def dot_fixed(A: np.ndarray, i: int, B: np.ndarray, j: int) -> float:  # pragma: no cover
    """``A[i] . B[j]`` in float64, in a fixed order (the same bits on every CPU)."""
    d = A.shape[1]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    k = 0
    while k + 8 <= d:
        a0 += np.float64(A[i, k]) * np.float64(B[j, k])
        a1 += np.float64(A[i, k + 1]) * np.float64(B[j, k + 1])
        a2 += np.float64(A[i, k + 2]) * np.float64(B[j, k + 2])
        a3 += np.float64(A[i, k + 3]) * np.float64(B[j, k + 3])
        a4 += np.float64(A[i, k + 4]) * np.float64(B[j, k + 4])
        a5 += np.float64(A[i, k + 5]) * np.float64(B[j, k + 5])
        a6 += np.float64(A[i, k + 6]) * np.float64(B[j, k + 6])
        a7 += np.float64(A[i, k + 7]) * np.float64(B[j, k + 7])
        k += 8
    while k < d:
        a0 += np.float64(A[i, k]) * np.float64(B[j, k])
        k += 1
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@numba.njit(cache=True, nogil=True)
def cosine_at(
    A: np.ndarray, qA: np.ndarray, i: int, B: np.ndarray, qB: np.ndarray, j: int
) -> float:  # pragma: no cover - jitted
    """The reference similarity: cosine of rows ``A[i]`` and ``B[j]``, given their squared
    norms ``qA[i]``, ``qB[j]`` (from :func:`row_sqnorms`).

    Symmetric bit for bit, and exactly 1.0 for two identical rows (``sqrt(q * q) == q`` in
    IEEE arithmetic), so copies of an image always tie with each other.
    """
    return dot_fixed(A, i, B, j) / np.sqrt(qA[i] * qB[j])


@numba.njit(cache=True, nogil=True)
def _sqnorms(X: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - jitted
    for i in range(X.shape[0]):
        out[i] = dot_fixed(X, i, X, i)


def row_sqnorms(X: np.ndarray) -> np.ndarray:
    """Float64 squared L2 norm of each row, in the fixed order of :func:`cosine_at`."""
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    out = np.empty(len(X), dtype=np.float64)
    _sqnorms(np.ascontiguousarray(X), out)
    return out


def row_norms(X: np.ndarray) -> np.ndarray:
    """Float64 L2 norm of each row, in a fixed order (the same on every CPU).

    Squares of float32 values are exact in float64 and can neither overflow nor underflow,
    whatever the magnitude of the row.

    >>> n = row_norms(np.array([[3e-30, 4e-30], [3e30, 4e30]], dtype=np.float32))
    >>> (n / [5e-30, 5e30]).round(6).tolist()
    [1.0, 1.0]
    """
    return np.sqrt(row_sqnorms(X))


def float32_error(n_dims: int) -> float:
    """Bound on ``|float32 dot product of two float32 unit rows - cosine_at|``.

    Any summation order, with or without FMA: ``gamma_d = d u / (1 - d u)`` (Higham, Accuracy
    and Stability of Numerical Algorithms, §3.1) for the products and sums, plus the rows'
    distance from unit norm after rounding to float32 (a few ``u``), with a 5% and 1e-7 cushion.
    """
    u = 2.0**-24
    du = (n_dims + 4) * u
    if du >= 0.5:  # millions of dimensions: no useful bound, every candidate is recomputed
        return 4.0
    return 1.05 * du / (1.0 - du) + 1e-7


def normalize_rows(
    X: np.ndarray,
    *,
    out: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    block: int = 16384,
) -> np.ndarray:
    """L2-normalise rows: float64 norms and division, one rounding to float32 at the end.

    Rows of any magnitude a float32 can hold (1e-38 to 3e38, subnormals included) come out
    as unit vectors; nothing is squared in float32. The result is the same on every CPU.

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
    >>> normalize_rows(np.array([[3e-25, 4e-25]], dtype=np.float32))
    array([[0.6, 0.8]], dtype=float32)
    """
    n = len(X) if rows is None else len(rows)
    if out is None:
        out = np.empty((n, X.shape[1]), dtype=np.float32)
    for start in range(0, n, block):
        part = X[start : start + block] if rows is None else X[rows[start : start + block]]
        part = np.asarray(part, dtype=np.float64)  # (b, d)
        norms = row_norms(part)
        out[start : start + block] = part / norms[:, None]
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
