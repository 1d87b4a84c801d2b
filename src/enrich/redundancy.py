"""How redundant is a dataset? Each image's highest similarity to any *other* image.

This is the paper's Fig. 1: "for each dataset we identified the maximum pairwise
similarity for each image", shown as a cumulative distribution. The computation is exact
and blocked: symmetric float32 GEMM tiles of ``block x block``, reduced on the fly, so
memory stays O(N·d + block²) and no N x N matrix ever exists.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError
from enrich.similarity import normalize_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["RedundancyResult", "near_duplicate_groups", "plot_cdf", "redundancy"]

THRESHOLDS = (0.8, 0.9, 0.95)
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass(frozen=True)
class RedundancyResult:
    """Per-image redundancy.

    Attributes
    ----------
    max_similarity : ndarray of shape (n_images,), float32
        Highest cosine similarity to any other image (self excluded).
    nearest : ndarray of shape (n_images,), int64
        Index of that most similar image (lowest index on ties).
    group : ndarray of shape (n_images,), int64
        Near-duplicate group label at `group_threshold` (connected components of the graph
        with an edge wherever similarity >= threshold); singletons have their own label.
    group_threshold : float
    """

    max_similarity: np.ndarray
    nearest: np.ndarray
    group: np.ndarray
    group_threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Quantiles and the paper's Fig. 1 statements (fractions above 0.8/0.9/0.95, below 0.4).

        >>> r = redundancy(np.array([[1.0, 0], [1, 0.01], [0, 1]]))
        >>> r.summary()["fraction_above"]["0.9"]
        0.6666666666666666
        """
        m = self.max_similarity.astype(np.float64)
        groups = self.groups()
        return {
            "n_images": len(m),
            "mean": float(m.mean()),
            "quantiles": {f"{q:g}": float(np.quantile(m, q)) for q in QUANTILES},
            "fraction_above": {f"{t:g}": float((m > t).mean()) for t in THRESHOLDS},
            "fraction_below": {"0.4": float((m < 0.4).mean())},
            "near_duplicates": {
                "threshold": self.group_threshold,
                "n_groups": len(groups),
                "n_images_in_groups": int(sum(len(g) for g in groups)),
                "largest_group": int(max((len(g) for g in groups), default=0)),
            },
        }

    def groups(self, min_size: int = 2) -> list[np.ndarray]:
        """Near-duplicate groups with at least `min_size` images, largest first.

        Each group is an int64 array of indices, sorted.
        """
        order = np.argsort(self.group, kind="stable")
        labels = self.group[order]
        cuts = np.flatnonzero(np.diff(labels)) + 1
        out = [g for g in np.split(order, cuts) if len(g) >= min_size]
        out.sort(key=lambda g: (-len(g), int(g[0])))
        return [np.sort(g) for g in out]


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, i: int) -> int:  # pragma: no cover - jitted
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True, nogil=True)
def _union(parent: np.ndarray, i: int, j: int) -> None:  # pragma: no cover - jitted
    """Join i and j; the smaller root wins, so every component's root is its lowest index
    whatever the order of the unions."""
    ri = _find(parent, i)
    rj = _find(parent, j)
    if ri < rj:
        parent[rj] = ri
    elif rj < ri:
        parent[ri] = rj


@numba.njit(cache=True, nogil=True)
def _merge_parents(parent: np.ndarray, other: np.ndarray) -> None:  # pragma: no cover
    """Add every union recorded in `other` (another worker's forest) to `parent`."""
    for i in range(other.shape[0]):
        if other[i] != i:
            _union(parent, i, other[i])


# No NaN (inputs are validated finite) lets max() vectorise; infinities stay allowed.
@numba.njit(cache=True, nogil=True, fastmath={"nnan", "nsz", "reassoc"})
def _reduce_tile(
    T: np.ndarray,
    i0: int,
    j0: int,
    diagonal: bool,
    row_best: np.ndarray,
    row_block: np.ndarray,
    col_best: np.ndarray,
    col_block: np.ndarray,
    thr: np.float32,
    parent: np.ndarray,
    rmax: np.ndarray,
    cmax: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Fold one similarity tile ``T = Xn[i0:] @ Xn[j0:].T`` into the running maxima, in one
    pass over the tile (four rows at a time): row maxima (partners j >= i) and, off the
    diagonal, column maxima (the same tile seen from the partners' side); rows with a value at
    or above `thr` then have their near-duplicate pairs joined in the union-find `parent`.
    Strict '>' keeps the earliest (lowest-index) partner block on ties. The tile holds finite
    values only, and -inf on the diagonal."""
    a, b = T.shape
    if diagonal:
        for i in range(min(a, b)):
            T[i, i] = -np.inf  # self excluded
    for j in range(b):
        cmax[j] = -np.inf
    i = 0
    while i + 4 <= a:
        r0 = -np.inf
        r1 = -np.inf
        r2 = -np.inf
        r3 = -np.inf
        for j in range(b):
            x0 = T[i, j]
            x1 = T[i + 1, j]
            x2 = T[i + 2, j]
            x3 = T[i + 3, j]
            r0 = max(r0, x0)
            r1 = max(r1, x1)
            r2 = max(r2, x2)
            r3 = max(r3, x3)
            cmax[j] = max(cmax[j], max(max(x0, x1), max(x2, x3)))
        rmax[i] = r0
        rmax[i + 1] = r1
        rmax[i + 2] = r2
        rmax[i + 3] = r3
        i += 4
    while i < a:
        r = -np.inf
        for j in range(b):
            r = max(r, T[i, j])
            cmax[j] = max(cmax[j], T[i, j])
        rmax[i] = r
        i += 1
    for i in range(a):
        if rmax[i] > row_best[i0 + i]:
            row_best[i0 + i] = rmax[i]
            row_block[i0 + i] = j0
        if rmax[i] >= thr:
            for j in range(b):
                if T[i, j] >= thr:
                    _union(parent, i0 + i, j0 + j)
    if not diagonal:
        for j in range(b):
            if cmax[j] > col_best[j0 + j]:
                col_best[j0 + j] = cmax[j]
                col_block[j0 + j] = i0


def _nearest_in_blocks(
    Xn: np.ndarray, best_block: np.ndarray, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact argmax (lowest index on ties) for each image, searching only the block of
    partners (``best_block``: its first index) that holds its maximum: one small GEMM per
    block instead of an argmax per tile."""
    n = len(Xn)
    value = np.empty(n, dtype=np.float32)
    nearest = np.empty(n, dtype=np.int64)
    order = np.argsort(best_block, kind="stable")
    cuts = np.flatnonzero(np.diff(best_block[order])) + 1
    for imgs in np.split(order, cuts):
        j0 = int(best_block[imgs[0]])
        S = Xn[imgs] @ Xn[j0 : j0 + block].T  # (m, b)
        self_in = (imgs >= j0) & (imgs < j0 + block)
        S[np.flatnonzero(self_in), imgs[self_in] - j0] = -np.inf
        k = S.argmax(axis=1)
        nearest[imgs] = k + j0
        value[imgs] = S[np.arange(len(imgs)), k]
    return value, nearest


@numba.njit(cache=True)
def _labels(parent: np.ndarray) -> np.ndarray:  # pragma: no cover - jitted
    out = np.empty(parent.shape[0], dtype=np.int64)
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)
    return out


class _Partial:
    """One worker's running maxima and near-duplicate forest over the tiles it was given."""

    def __init__(self, n: int, block: int) -> None:
        self.row_best = np.full(n, -np.inf, dtype=np.float32)  # partners j >= i
        self.row_block = np.zeros(n, dtype=np.int64)  # first index of the partner block
        self.col_best = np.full(n, -np.inf, dtype=np.float32)  # partners j < i
        self.col_block = np.zeros(n, dtype=np.int64)
        self.parent = np.arange(n, dtype=np.int64)
        self.buffer = np.empty((block, block), dtype=np.float32)
        self.rmax = np.empty(block, dtype=np.float32)
        self.cmax = np.empty(block, dtype=np.float32)
        self.block = block
        self.error: BaseException | None = None

    def run(
        self,
        Xn: np.ndarray,
        tiles: list[tuple[int, int]],
        thr: np.float32,
        progress: Callable[[int], None] | None,
    ) -> None:
        try:
            b = self.block
            for i0, j0 in tiles:
                Xi, Xj = Xn[i0 : i0 + b], Xn[j0 : j0 + b]
                T = self.buffer[: len(Xi), : len(Xj)]
                np.matmul(Xi, Xj.T, out=T)  # (a, b) float32 tile; BLAS releases the GIL
                _reduce_tile(
                    T,
                    i0,
                    j0,
                    i0 == j0,
                    self.row_best,
                    self.row_block,
                    self.col_best,
                    self.col_block,
                    thr,
                    self.parent,
                    self.rmax,
                    self.cmax,
                )
                if progress is not None:
                    progress(1)
        except BaseException as exc:  # re-raised by the caller's thread
            self.error = exc


def _merge(
    parts: list[_Partial],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Combine workers' maxima (higher value; on equal values the lower partner block, as a
    single sequential pass would keep) and their near-duplicate forests."""
    first = parts[0]
    row_best, row_block = first.row_best, first.row_block
    col_best, col_block = first.col_best, first.col_block
    for part in parts[1:]:
        for best, blk, pb, pk in (
            (row_best, row_block, part.row_best, part.row_block),
            (col_best, col_block, part.col_best, part.col_block),
        ):
            take = (pb > best) | ((pb == best) & (pk < blk))
            best[take] = pb[take]
            blk[take] = pk[take]
        _merge_parents(first.parent, part.parent)
    return row_best, row_block, col_best, col_block, first.parent


def _locked(progress: Callable[[int], None], lock: threading.Lock) -> Callable[[int], None]:
    def tick(k: int) -> None:
        with lock:
            progress(k)

    return tick


# Each worker holds O(N) maxima and a forest (~32 bytes per image) and a block² tile.
_MAX_WORKERS = 8


@contextmanager
def _blas_workers() -> Iterator[int]:
    """One worker per BLAS thread (at most 8), the BLAS threads shared out among them (one
    each on a laptop); one worker with BLAS left alone when threadpoolctl cannot see it."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        yield 1
        return
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    n = max((int(i.get("num_threads", 1)) for i in blas), default=1)
    if n <= 1:
        yield 1
        return
    workers = min(n, _MAX_WORKERS)
    with threadpool_limits(limits=max(1, n // workers), user_api="blas"):
        yield workers


# --------------------------------------------------------------------------- public API
def redundancy(
    X: Any,
    *,
    group_threshold: float = 0.95,
    block: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> RedundancyResult:
    """Each image's maximum cosine similarity to any other image, exactly.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims)
        Embeddings; finite, non-zero rows, N >= 2.
    group_threshold : float
        Similarity at or above which two images are near-duplicates (for `groups`).
    block : int
        Tile size; memory is O(N·d + block²).
    progress : callable, optional
        Called with the number of tiles done, as they finish.

    Returns
    -------
    RedundancyResult

    Examples
    --------
    >>> r = redundancy(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]))
    >>> r.max_similarity.round(2).tolist(), r.nearest.tolist()
    ([0.8, 0.8, 0.6], [1, 0, 1])
    """
    if not -1.0 <= float(group_threshold) <= 1.0:
        raise EnrichError(f"group_threshold={group_threshold}: expected a similarity in [-1, 1]")
    Xn = normalize_rows(check_vectors(X))
    n = len(Xn)
    tiles = [(i0, j0) for i0 in range(0, n, block) for j0 in range(i0, n, block)]
    with _blas_workers() as n_workers:
        n_workers = max(1, min(n_workers, len(tiles)))
        parts = [_Partial(n, block) for _ in range(n_workers)]
        thr = np.float32(group_threshold)
        if n_workers == 1:
            parts[0].run(Xn, tiles, thr, progress)
        else:
            # Each worker takes every n-th tile, with a one-thread GEMM, so that one core's
            # reduction overlaps another's GEMM; partial results merge exactly below.
            lock = threading.Lock()
            tick = None if progress is None else _locked(progress, lock)
            threads = [
                threading.Thread(
                    target=part.run, args=(Xn, tiles[w::n_workers], thr, tick), daemon=True
                )
                for w, part in enumerate(parts)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for part in parts:
                if part.error is not None:
                    raise part.error
    row_best, row_block, col_best, col_block, parent = _merge(parts)
    # Row side (partners j >= i) and column side (partners j < i) were kept apart so that, on
    # equal values, the lower-indexed partner block (the column side) wins.
    from_cols = col_best >= row_best
    best_block = np.where(from_cols, col_block, row_block)
    best, arg = _nearest_in_blocks(Xn, best_block, block)
    return RedundancyResult(
        max_similarity=np.minimum(best, np.float32(1.0)),
        nearest=arg,
        group=_labels(parent),
        group_threshold=float(group_threshold),
        info={"block": block, "workers": n_workers},
    )


def near_duplicate_groups(X: Any, threshold: float = 0.95, min_size: int = 2) -> list[np.ndarray]:
    """Groups of images linked by similarity >= `threshold` (connected components).

    >>> near_duplicate_groups(np.array([[1.0, 0], [1, 0.01], [0, 1]]), 0.99)
    [array([0, 1])]
    """
    return redundancy(X, group_threshold=threshold).groups(min_size)


def plot_cdf(
    datasets: Mapping[str, np.ndarray | RedundancyResult],
    ax: Axes | None = None,
    *,
    title: str = "How redundant is each dataset?",
) -> Figure:
    """The paper's Fig. 1: the CDF of each image's max similarity, several datasets overlaid.

    Parameters
    ----------
    datasets : mapping of name -> max similarities (ndarray (N,)) or RedundancyResult
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    else:
        fig = ax.figure  # type: ignore[assignment]
    for name, values in datasets.items():
        m = values.max_similarity if isinstance(values, RedundancyResult) else np.asarray(values)
        xs = np.sort(m.astype(np.float64))
        ys = np.arange(1, len(xs) + 1) / len(xs)
        ax.step(xs, ys, where="post", label=f"{name} (N={len(xs):,})")
    for t in (0.8, 0.9):
        ax.axvline(t, color="0.8", lw=0.8, ls="--", zorder=0)
    ax.set_xlabel("max similarity to any other image")
    ax.set_ylabel("cumulative fraction of images")
    ax.set_ylim(0, 1.0)
    ax.set_title(title)
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# -- `enrich.redundancy` is this module and its function ----------------------------------------
import sys  # noqa: E402
import types  # noqa: E402


class _CallableModule(types.ModuleType):
    """``enrich.redundancy`` names both this module and its main function.

    Which one ``enrich.redundancy`` is would depend on import order (importing the submodule
    first made ``enrich.redundancy(X)`` fail, and ``enrich.redundancy.plot_cdf`` failed the
    other way round), so the module is callable: both spellings work in any order.
    """

    def __call__(self, X: Any, **kwargs: Any) -> RedundancyResult:
        return redundancy(X, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
