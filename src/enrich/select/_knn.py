"""Exact k nearest neighbours by cosine similarity, blocked, no N x N matrix.

Shared by the label-free strategies (TypiClust's typicality, ProbCover's δ-balls, facility
location's sparse similarity, the density guard). The pattern is the one of
:mod:`enrich.redundancy`: symmetric float32 GEMM tiles of ``block x block`` (only tiles with
``j0 >= i0``), each folded at once by a numba pass into the running top-k of its rows and of
its columns, so memory is O(N·(d + k) + block²).

Ties: every row sees its candidates in ascending index order (earlier row blocks through the
column side, then its own block and later blocks through the row side) and a candidate must
be strictly better than the current k-th to enter, so among equal similarities the lowest
indices are kept. Each row's top-k is a binary heap (O(log k) per entry) and a contiguous
array mirrors each row's k-th value for the one comparison most candidates get. As in
``redundancy``, tiles are shared among worker threads (one per BLAS thread, each GEMM
single-threaded); each worker keeps its own top-k lists (its candidates still arrive in
ascending order), and the lists merge exactly by (similarity desc, index asc), so the answer
is the same for any number of workers. The result is
exact for the float32 similarities; prior validation of data is assumed (finite, non-zero
rows).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numba
import numpy as np

from enrich.redundancy import _blas_workers
from enrich.similarity import normalize_rows

__all__ = ["knn_cosine", "unit_rows"]


def _locked(progress: Callable[[int], None], lock: threading.Lock) -> Callable[[int], None]:
    """`progress`, called under `lock` (tiles finish on several threads)."""

    def tick(k: int) -> None:
        with lock:
            progress(k)

    return tick


def unit_rows(X: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy of validated embeddings, (N, d)."""
    return normalize_rows(X)


@numba.njit(cache=True, nogil=True)
def _push(
    vals: np.ndarray, idx: np.ndarray, worst: np.ndarray, r: int, v: np.float32, j: int
) -> None:  # pragma: no cover - jitted
    """Replace row r's worst entry by (v, j). Each row is a binary min-heap ordered by
    (value, -index): its root, slot 0, is the lowest value, on equal values the highest
    index. O(log k) per replacement; `worst[r]` mirrors the root's value."""
    k = vals.shape[1]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= k:
            break
        c = left
        right = left + 1
        if right < k and (
            vals[r, right] < vals[r, left]
            or (vals[r, right] == vals[r, left] and idx[r, right] > idx[r, left])
        ):
            c = right
        # stop when the new entry is no worse than the worse child
        if v < vals[r, c] or (v == vals[r, c] and j > idx[r, c]):
            break
        vals[r, i] = vals[r, c]
        idx[r, i] = idx[r, c]
        i = c
    vals[r, i] = v
    idx[r, i] = j
    worst[r] = vals[r, 0]


@numba.njit(cache=True, nogil=True)
def _fold_tile(
    T: np.ndarray,
    i0: int,
    j0: int,
    diagonal: bool,
    vals: np.ndarray,
    idx: np.ndarray,
    worst: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Fold tile ``T = Xn[i0:] @ Xn[j0:].T`` into the top-k of its rows and (off the diagonal)
    of its columns. For a column's row the candidates ``i0 + i`` arrive in ascending order,
    all before its own row block's tiles."""
    a, b = T.shape
    for i in range(a):
        r = i0 + i
        wr = worst[r]
        for j in range(b):
            c = j0 + j
            v = T[i, j]
            if diagonal:
                if c != r and v > wr:
                    _push(vals, idx, worst, r, v, c)
                    wr = worst[r]
            else:
                if v > worst[c]:
                    _push(vals, idx, worst, c, v, r)
                if v > wr:
                    _push(vals, idx, worst, r, v, c)
                    wr = worst[r]


def knn_cosine(
    Xn: np.ndarray,
    k: int,
    *,
    block: int = 1024,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar other rows of every row (self excluded).

    Parameters
    ----------
    Xn : ndarray of shape (n_images, n_dims), float32
        Unit rows (:func:`unit_rows`).
    k : int
        1 <= k <= N - 1.
    workers : int, optional
        Threads (each with a one-thread GEMM); default: one per BLAS thread, at most 8. The
        result is the same for any number.

    Returns
    -------
    neighbors : ndarray of shape (n_images, k), int64
        Sorted by similarity, highest first; equal similarities by lowest index.
    similarities : ndarray of shape (n_images, k), float32

    Examples
    --------
    >>> Xn = unit_rows(np.array([[1.0, 0], [0.9, 0.1], [0, 1]]))
    >>> knn_cosine(Xn, 1)[0].ravel().tolist()
    [1, 0, 1]
    """
    n = len(Xn)
    if not 1 <= k <= n - 1:
        raise ValueError(f"k={k}: expected 1 <= k <= N-1 = {n - 1}")
    Xn = np.ascontiguousarray(Xn, dtype=np.float32)
    tiles = [(i0, j0) for i0 in range(0, n, block) for j0 in range(i0, n, block)]
    with _blas_workers() as n_workers:
        n_workers = max(1, min(workers or n_workers, len(tiles)))
        parts = [_Partial(n, k, block) for _ in range(n_workers)]
        if n_workers == 1:
            parts[0].run(Xn, tiles, progress)
        else:
            # each worker takes every w-th tile with a one-thread GEMM, so that one core's
            # fold overlaps another's GEMM; the per-worker top-k lists merge exactly below
            lock = threading.Lock()
            tick = None if progress is None else _locked(progress, lock)
            threads = [
                threading.Thread(target=part.run, args=(Xn, tiles[w::n_workers], tick))
                for w, part in enumerate(parts)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for part in parts:
                if part.error is not None:
                    raise part.error
    vals = np.concatenate([p.vals for p in parts], axis=1)  # (N, workers·k)
    idx = np.concatenate([p.idx for p in parts], axis=1)
    # sort each row: similarity descending, then index ascending; keep the first k
    order = _row_order(vals, idx)[:, :k]
    rows = np.arange(n)[:, None]
    return idx[rows, order], np.minimum(vals[rows, order], np.float32(1.0))


class _Partial:
    """One worker's running top-k (heaps) over the tiles it was given."""

    def __init__(self, n: int, k: int, block: int) -> None:
        self.vals = np.full((n, k), -np.inf, dtype=np.float32)
        # placeholders with indices above any real one, so real candidates displace them first
        self.idx = np.full((n, k), n, dtype=np.int64)
        self.worst = np.full(n, -np.inf, dtype=np.float32)  # each row's current k-th best
        self.buffer = np.empty((block, block), dtype=np.float32)
        self.block = block
        self.error: BaseException | None = None

    def run(
        self,
        Xn: np.ndarray,
        tiles: list[tuple[int, int]],
        progress: Callable[[int], None] | None,
    ) -> None:
        try:
            b = self.block
            for i0, j0 in tiles:
                Xi, Xj = Xn[i0 : i0 + b], Xn[j0 : j0 + b]
                T = self.buffer[: len(Xi), : len(Xj)]
                np.matmul(Xi, Xj.T, out=T)  # (a, b) float32 tile; BLAS releases the GIL
                _fold_tile(T, i0, j0, i0 == j0, self.vals, self.idx, self.worst)
                if progress is not None:
                    progress(len(Xi) if j0 == i0 else 0)
        except BaseException as exc:  # re-raised by the caller's thread
            self.error = exc


def _row_order(vals: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per-row permutation sorting by (-similarity, index)."""
    # idx < n+1 always; a stable sort by index, then a stable sort by -value
    o1 = np.argsort(idx, axis=1, kind="stable")
    v1 = np.take_along_axis(vals, o1, axis=1)
    o2 = np.argsort(-v1, axis=1, kind="stable")
    return np.take_along_axis(o1, o2, axis=1)
