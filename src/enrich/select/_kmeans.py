"""k-means (k-means++ seeding, then Lloyd iterations) on unit rows, numpy + numba.

scikit-learn is not a dependency of ``enrich``; this is the textbook algorithm (Lloyd 1982;
Arthur & Vassilvitskii 2007) with blocked GEMM assignments, so memory stays O(N·d + block·K).
Seeding runs on a random subsample of at most ``max(10_000, 20·K)`` rows, as large-scale
implementations do; the Lloyd passes use every row. Empty clusters are re-seeded with the
rows farthest from their centres. Deterministic for a given generator.

Prior validation of data is assumed: unit float32 rows, ``1 <= K <= N``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["kmeans"]


@numba.njit(cache=True, nogil=True)
def _accumulate(
    X: np.ndarray, labels: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - jitted
    d = X.shape[1]
    sums = np.zeros((k, d), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    for i in range(X.shape[0]):
        c = labels[i]
        counts[c] += 1
        for t in range(d):
            sums[c, t] += X[i, t]
    return sums, counts


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _min_d2(X: np.ndarray, c: int, d2: np.ndarray) -> None:  # pragma: no cover - jitted
    """d2[i] = min(d2[i], |X[i] - X[c]|^2) for unit rows (2 - 2 x.c), single-threaded: one
    short pass per centre, where a BLAS GEMV would spend more on waking its threads."""
    d = X.shape[1]
    for i in range(X.shape[0]):
        acc = 0.0
        for t in range(d):
            acc += np.float64(X[i, t]) * np.float64(X[c, t])
        v = max(2.0 - 2.0 * acc, 0.0)
        if v < d2[i]:
            d2[i] = v


def _assign(X: np.ndarray, C: np.ndarray, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre (squared Euclidean) per row, and that squared distance. (N,), (N,)."""
    half = 0.5 * np.einsum("ij,ij->i", C, C).astype(np.float32)  # (K,)
    labels = np.empty(len(X), dtype=np.int64)
    dist = np.empty(len(X), dtype=np.float32)
    x2 = np.einsum("ij,ij->i", X, X)
    for s in range(0, len(X), block):
        score = X[s : s + block] @ C.T  # (b, K)
        score -= half
        lab = score.argmax(axis=1)
        labels[s : s + block] = lab
        best = score[np.arange(len(lab)), lab]
        dist[s : s + block] = np.maximum(x2[s : s + block] - 2.0 * best, 0.0)
    return labels, dist


def _plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D² sampling) on the unit rows of X; returns (k, d) float32 centres."""
    n = len(X)
    centres = np.empty((k, X.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centres[0] = X[first]
    d2 = np.full(n, np.inf)
    _min_d2(X, first, d2)
    for c in range(1, k):
        total = d2.sum()
        if total <= 0.0:  # fewer distinct rows than clusters: any row will do
            j = int(rng.integers(n))
        else:
            j = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            j = min(j, n - 1)
        centres[c] = X[j]
        _min_d2(X, j, d2)
    return centres


def kmeans(
    X: np.ndarray, k: int, rng: np.random.Generator, *, max_iter: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster unit rows into k groups.

    Parameters
    ----------
    X : ndarray of shape (n_images, n_dims), float32
    k : int
        1 <= k <= N.
    rng : numpy Generator

    Returns
    -------
    labels : ndarray of shape (n_images,), int64, values in 0..k-1
    centres : ndarray of shape (k, n_dims), float32

    Examples
    --------
    >>> X = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], dtype=np.float32)
    >>> lab, _ = kmeans(X, 2, np.random.default_rng(0))
    >>> bool(lab[0] == lab[1] != lab[2] == lab[3])
    True
    """
    n = len(X)
    if not 1 <= k <= n:
        raise ValueError(f"k={k}: expected 1 <= k <= N={n}")
    m = min(n, max(10_000, 20 * k))
    sample = X if m == n else X[np.sort(rng.choice(n, size=m, replace=False))]
    C = _plusplus(sample, k, rng)
    labels, dist = _assign(X, C)
    for _ in range(max_iter):
        sums, counts = _accumulate(X, labels, k)
        empty = np.flatnonzero(counts == 0)
        C = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        if empty.size:
            # re-seed empty clusters with the rows farthest from their centres
            far = np.argsort(-dist, kind="stable")[: empty.size]
            C[empty] = X[far]
        new, dist = _assign(X, C)
        if np.array_equal(new, labels) and not empty.size:
            break
        labels = new
    return labels, C
