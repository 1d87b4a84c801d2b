"""How redundant is a dataset? Each image's highest similarity to any *other* image.

This is the paper's Fig. 1: "for each dataset we identified the maximum pairwise
similarity for each image", shown as a cumulative distribution. The computation is exact
and blocked: symmetric float32 GEMM tiles of ``block x block``, reduced on the fly, so
memory stays O(N·d + block²) and no N x N matrix ever exists. The float32 tiles only rule
candidates out; the maximum, the nearest image and every near-duplicate link are decided on
the reference similarity (:func:`enrich.similarity.cosine_at`), so the answer is the same on
every CPU and ties go to the lowest index.
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
from enrich.similarity import cosine_at, float32_error, normalize_rows, row_sqnorms

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["GROUP_METHODS", "RedundancyResult", "near_duplicate_groups", "plot_cdf", "redundancy"]

THRESHOLDS = (0.8, 0.9, 0.95)
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
#: Near-duplicate grouping rules; the first is the default.
GROUP_METHODS = ("representative", "components")


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
        Near-duplicate group of each image at `group_threshold`, labelled by the group's
        lowest index; an image in no group has its own index. With ``group_method=
        "representative"`` that lowest index is the group's representative, and every member's
        similarity to it is >= the threshold; with ``"components"`` groups are the connected
        components of the graph with an edge wherever similarity >= threshold (they chain).
    group_threshold : float
    group_method : {"representative", "components"}
    """

    max_similarity: np.ndarray
    nearest: np.ndarray
    group: np.ndarray
    group_threshold: float
    info: dict[str, Any] = field(default_factory=dict)
    group_method: str = GROUP_METHODS[0]

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
                "method": self.group_method,
                "threshold": self.group_threshold,
                "n_groups": len(groups),
                "n_images_in_groups": int(sum(len(g) for g in groups)),
                "largest_group": int(max((len(g) for g in groups), default=0)),
            },
        }

    def groups(self, min_size: int = 2) -> list[np.ndarray]:
        """Near-duplicate groups with at least `min_size` images, largest first.

        Each group is an int64 array of indices, sorted (its first is the representative).
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
def _tile_maxima(
    T: np.ndarray, diagonal: bool, rmax: np.ndarray, cmax: np.ndarray
) -> None:  # pragma: no cover - jitted
    """Row and column maxima of one float32 tile in one pass (four rows at a time); the
    diagonal of a diagonal tile is set to -inf first (self excluded)."""
    a, b = T.shape
    if diagonal:
        for i in range(min(a, b)):
            T[i, i] = -np.inf
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


@numba.njit(cache=True, nogil=True)
def _offer(
    best: np.ndarray, near: np.ndarray, i: int, c: float, j: int
) -> None:  # pragma: no cover - jitted
    """Keep (c, j) if it beats image i's best so far: higher similarity, then lower index.
    The rule is commutative, so any tile order and any worker split give the same result."""
    if c > best[i] or (c == best[i] and j < near[i]):
        best[i] = c
        near[i] = j


@numba.njit(cache=True, nogil=True)
def _is_link(
    t: float, Xn: np.ndarray, sq: np.ndarray, i: int, j: int, thr: float, err: float
) -> bool:  # pragma: no cover - jitted
    """Reference similarity of i and j >= thr, given their float32 tile value `t`: decided
    by `t` alone when it is further than the float32 error from the threshold."""
    if t >= thr + err:
        return True
    if t < thr - err:
        return False
    return cosine_at(Xn, sq, i, Xn, sq, j) >= thr


@numba.njit(cache=True, nogil=True)
def _reduce_tile(
    T: np.ndarray,
    Xn: np.ndarray,
    sq: np.ndarray,
    i0: int,
    j0: int,
    diagonal: bool,
    best: np.ndarray,
    near: np.ndarray,
    err: float,
    thr: float,
    parent: np.ndarray,
    rmax: np.ndarray,
    cmax: np.ndarray,
    flag: np.ndarray,
    flag_lo: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Fold one float32 tile ``T = Xn[i0:] @ Xn[j0:].T`` into each image's best partner, seen
    from the rows and (off the diagonal) from the columns, and, when `parent` is not empty,
    join near-duplicate pairs in that union-find forest.

    Only entries within the float32 error `err` of what could still win are looked at again,
    with the reference similarity: a partner j can only tie or beat image i's best so far if
    ``T >= best - err``, and only be the tile's best if ``T >= max(T) - 2 err``."""
    a, b = T.shape
    _tile_maxima(T, diagonal, rmax, cmax)
    components = parent.shape[0] > 0
    for i in range(a):
        gi = i0 + i
        r = rmax[i]
        lo = max(best[gi] - err, r - 2.0 * err)
        if r >= lo:
            for j in range(b):
                gj = j0 + j
                if T[i, j] >= lo and gj != gi:  # (a one-row tile's row maximum is -inf)
                    _offer(best, near, gi, cosine_at(Xn, sq, gi, Xn, sq, gj), gj)
        if components and r >= thr - err:
            for j in range(b):
                if T[i, j] >= thr - err and _is_link(T[i, j], Xn, sq, gi, j0 + j, thr, err):
                    _union(parent, gi, j0 + j)
    if not diagonal:
        # Columns that may hold a better partner are few after the first tiles; they are
        # scanned together, row by row (a column alone would be a strided, cache-hostile walk).
        nf = 0
        for j in range(b):
            c = cmax[j]
            lo = max(best[j0 + j] - err, c - 2.0 * err)
            if c >= lo:
                flag[nf] = j
                flag_lo[nf] = lo
                nf += 1
        if nf > 0:
            for i in range(a):
                gi = i0 + i
                for k in range(nf):
                    j = flag[k]
                    if T[i, j] >= flag_lo[k]:
                        gj = j0 + j
                        _offer(best, near, gj, cosine_at(Xn, sq, gi, Xn, sq, gj), gi)


@numba.njit(cache=True, nogil=True)
def _cover(
    T: np.ndarray,
    Xn: np.ndarray,
    sq: np.ndarray,
    i0: int,
    j0: int,
    diagonal: bool,
    rep: np.ndarray,
    err: float,
    thr: float,
    rmax: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Greedy representatives in index order, one tile at a time: an image that no earlier
    representative covers becomes one (decided on its diagonal tile, once every earlier block
    has been seen), and every representative covers the not yet covered images at or above
    the threshold to it. ``rep[i]`` is -1 until image i is decided."""
    a, b = T.shape
    for i in range(a):
        gi = i0 + i
        if diagonal and rep[gi] == -1:
            rep[gi] = gi
        if rep[gi] != gi or rmax[i] < thr - err:
            continue
        for j in range(i + 1 if diagonal else 0, b):
            gj = j0 + j
            if rep[gj] == -1 and T[i, j] >= thr - err:
                if _is_link(T[i, j], Xn, sq, gi, gj, thr, err):
                    rep[gj] = gi


@numba.njit(cache=True)
def _labels(parent: np.ndarray) -> np.ndarray:  # pragma: no cover - jitted
    out = np.empty(parent.shape[0], dtype=np.int64)
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)
    return out


def _tile_product(A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
    """``out = A @ B.T`` in float32 (BLAS; its rounding may differ from CPU to CPU)."""
    np.matmul(A, B.T, out=out)


@dataclass
class _Pass:
    """What every worker shares: the unit rows, their reference norms, the rules."""

    Xn: np.ndarray  # (N, d) float32 unit rows
    sq: np.ndarray  # (N,) float64 squared norms of Xn's rows, for cosine_at
    block: int
    err: float
    thr: float
    rep: np.ndarray  # (N,) representatives; empty for "components"


class _Partial:
    """One worker's best partners and near-duplicate forest over the tiles it was given."""

    def __init__(self, n: int, block: int, components: bool) -> None:
        self.best = np.full(n, -np.inf, dtype=np.float64)  # reference similarity
        self.near = np.full(n, -1, dtype=np.int64)
        self.parent = np.arange(n if components else 0, dtype=np.int64)
        self.buffer = np.empty((block, block), dtype=np.float32)
        self.rmax = np.empty(block, dtype=np.float32)
        self.cmax = np.empty(block, dtype=np.float32)
        self.flag = np.empty(block, dtype=np.int64)
        self.flag_lo = np.empty(block, dtype=np.float64)
        self.error: BaseException | None = None

    def tile(self, p: _Pass, bi: int, bj: int) -> None:
        b = p.block
        i0, j0 = bi * b, bj * b
        Xi, Xj = p.Xn[i0 : i0 + b], p.Xn[j0 : j0 + b]
        T = self.buffer[: len(Xi), : len(Xj)]
        _tile_product(Xi, Xj, T)  # (a, b) float32 tile; BLAS releases the GIL
        args = (T, p.Xn, p.sq, i0, j0, bi == bj)
        _reduce_tile(
            *args,
            self.best,
            self.near,
            p.err,
            p.thr,
            self.parent,
            self.rmax,
            self.cmax,
            self.flag,
            self.flag_lo,
        )
        if p.rep.shape[0]:
            _cover(*args, p.rep, p.err, p.thr, self.rmax)


def _phases(n_blocks: int) -> list[list[list[tuple[int, int]]]]:
    """Tiles (block pairs I <= J) in row-block phases; each phase is a list of tasks, a task
    a list of tiles one worker does in order. Phase I holds the tiles (I, J > I); the first
    task also does the diagonal tile (I+1, I+1) right after (I, I+1), the last tile that
    block I+1 needs from earlier blocks, so representatives are decided in index order
    without a worker waiting for a diagonal tile alone."""
    phases = [[[(0, 0)]]]
    for i in range(n_blocks - 1):
        tasks = [[(i, i + 1), (i + 1, i + 1)]]
        tasks += [[(i, j)] for j in range(i + 2, n_blocks)]
        phases.append(tasks)
    return phases


def _run(
    parts: list[_Partial],
    p: _Pass,
    phases: list[list[list[tuple[int, int]]]],
    progress: Callable[[int], None] | None,
) -> None:
    """Every tile once, phase after phase; inside a phase the workers take tasks as they come
    free. Results do not depend on who took which (see `_offer` and `_union`)."""
    if len(parts) == 1:
        for tasks in phases:
            for task in tasks:
                for bi, bj in task:
                    parts[0].tile(p, bi, bj)
                    if progress is not None:
                        progress(1)
        return
    import itertools

    barrier = threading.Barrier(len(parts))
    counters = [itertools.count() for _ in phases]  # next() on a count is atomic
    lock = threading.Lock()

    def work(part: _Partial) -> None:
        try:
            for tasks, counter in zip(phases, counters, strict=True):
                while (k := next(counter)) < len(tasks):
                    for bi, bj in tasks[k]:
                        part.tile(p, bi, bj)
                        if progress is not None:
                            with lock:
                                progress(1)
                barrier.wait()
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # re-raised by the caller's thread
            part.error = exc
            barrier.abort()

    threads = [threading.Thread(target=work, args=(part,), daemon=True) for part in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for part in parts:
        if part.error is not None:
            raise part.error


def _merge(parts: list[_Partial]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine workers' best partners (higher similarity, then lower index) and forests."""
    first = parts[0]
    best, near = first.best, first.near
    for part in parts[1:]:
        take = (part.best > best) | ((part.best == best) & (part.near < near))
        best[take] = part.best[take]
        near[take] = part.near[take]
        if first.parent.shape[0]:
            _merge_parents(first.parent, part.parent)
    return best, near, first.parent


# Each worker holds O(N) maxima and a forest (~24 bytes per image) and a block² tile.
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


def _check_options(group_threshold: float, group_method: str, block: int) -> None:
    """The options' checks, shared with the Dask engine (:mod:`enrich.distributed.redundancy`)."""
    if not -1.0 <= float(group_threshold) <= 1.0:
        raise EnrichError(f"group_threshold={group_threshold}: expected a similarity in [-1, 1]")
    if group_method not in GROUP_METHODS:
        raise EnrichError(
            f"group_method={group_method!r}: expected one of {', '.join(GROUP_METHODS)}"
        )
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise EnrichError(f"block={block!r}: expected a whole number of rows >= 1")


# --------------------------------------------------------------------------- public API
def redundancy(
    X: Any,
    *,
    group_threshold: float = 0.95,
    group_method: str = "representative",
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
    group_method : {"representative", "components"}
        "representative" (default): greedy groups around a representative, in index order:
        the lowest image not yet in a group becomes a representative and takes every image
        not yet in a group whose similarity to it is >= the threshold; each member is >= the
        threshold to its representative, so groups do not chain. "components": connected
        components of "similarity >= threshold", which chain (A~B, B~C puts A and C together
        however far apart they are).
    block : int
        Tile size; memory is O(N·d + block²).
    progress : callable, optional
        Called with the number of tiles done, as they finish.

    Returns
    -------
    RedundancyResult

    Notes
    -----
    Similarities are compared as :func:`enrich.similarity.cosine_at` computes them (float64,
    one fixed order of operations): equal values, such as those of identical rows, are ties
    and go to the lowest index, on every CPU and for any number of threads.

    Examples
    --------
    >>> r = redundancy(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]))
    >>> r.max_similarity.astype(float).round(2).tolist(), r.nearest.tolist()
    ([0.8, 0.8, 0.6], [1, 0, 1])
    """
    _check_options(group_threshold, group_method, block)
    Xn = normalize_rows(check_vectors(X))
    n = len(Xn)
    block = int(min(block, n))
    components = group_method == "components"
    p = _Pass(
        Xn=Xn,
        sq=row_sqnorms(Xn),
        block=block,
        err=float32_error(Xn.shape[1]),
        thr=float(group_threshold),
        rep=np.full(0 if components else n, -1, dtype=np.int64),
    )
    phases = _phases(-(-n // block))
    n_tiles = sum(len(task) for tasks in phases for task in tasks)
    with _blas_workers() as n_workers:
        n_workers = max(1, min(n_workers, n_tiles))
        parts = [_Partial(n, block, components) for _ in range(n_workers)]
        _run(parts, p, phases, progress)
    best, near, parent = _merge(parts)
    return RedundancyResult(
        max_similarity=np.clip(best, -1.0, 1.0).astype(np.float32),
        nearest=near,
        group=_labels(parent) if components else p.rep,
        group_threshold=float(group_threshold),
        info={"block": block, "workers": n_workers},
        group_method=group_method,
    )


def near_duplicate_groups(
    X: Any, threshold: float = 0.95, min_size: int = 2, *, method: str = "representative"
) -> list[np.ndarray]:
    """Near-duplicate groups at `threshold` (see :func:`redundancy` for the two methods).

    >>> near_duplicate_groups(np.array([[1.0, 0], [1, 0.01], [0, 1]]), 0.99)
    [array([0, 1])]
    """
    return redundancy(X, group_threshold=threshold, group_method=method).groups(min_size)


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
