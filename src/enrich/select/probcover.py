"""ProbCover: greedy maximum coverage of δ-balls (Yehuda, Dekel, Hacohen & Weinshall,
"Active Learning Through a Covering Lens", NeurIPS 2022).

**What it favours.** Coverage: every region of the data within distance δ of some labeled
image, dense regions first (a ball that covers many uncovered images is worth more). Like
TypiClust it is a low-budget method; the paper shows it ahead of TypiClust and far ahead of
max-min ("Coreset") selection at a few labels per class, as long as δ is chosen well.

**The rule.** On unit-normalised embeddings (Euclidean distance = cosine distance), image
*x* covers every *y* with ``|x - y| < δ`` (its δ-ball, itself included). Images in the balls
of the initial set start covered. Then repeatedly choose the image whose ball covers the most
uncovered images (ties: the lowest index) and mark its ball covered.

**δ without labels** (the paper, Sec. 4.1): cluster into ``n_clusters`` k-means groups
(the paper uses the number of classes; we default to 10) and call a ball *pure* when every
image in it has its centre's cluster label. δ is the largest value whose share of pure balls
is at least ``purity`` (0.95). A ball around *x* is pure exactly when δ is at most ``d_x``,
the distance from *x* to its nearest image of another cluster, so δ is the
``floor((1 - purity)·N)``-th smallest ``d_x``: exact, no grid search.

**Sparse graph.** Balls come from the exact k-nearest-neighbour graph with
``k = max_degree`` (64): a ball holds at most ``max_degree`` neighbours besides its centre,
so memory is O(N·max_degree), never N×N. Where a ball would hold more, the greedy sees it as
"at least max_degree dense", which only matters in regions that are near-duplicates anyway.
``d_x`` is read from the same graph; where none of x's neighbours lies in another cluster,
the k-th neighbour's distance is a lower bound, so δ is exact whenever the quantile falls
among images whose boundary lies within the graph, and a conservative (smaller) δ otherwise
(``info["delta_exact"]`` says which).

**After full coverage** the order continues with the paper's remedy for larger budgets, a
smaller δ. A round ends when no ball would cover at least two uncovered images (a ball that
covers only its own centre is no better than any other choice, and the plain greedy would
take those in index order); then δ is halved, the balls shrink (edges of the same graph), the
images in the balls of everything chosen so far are covered, and the greedy resumes. When no
unchosen image has a neighbour within δ any more (or after 32 rounds), the remaining images
follow by the size of their ball at the original δ (largest first: dense before isolated;
ties by index). ``info["deltas"]`` lists the δ of each round.

Deterministic for a seed (k-means++ seeding draws from it); no labels are read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from enrich.errors import EnrichError
from enrich.select._common import check_fraction, check_int, prepare
from enrich.select._kmeans import kmeans
from enrich.select._knn import knn_cosine, unit_rows
from enrich.select.base import InitialSpec, RankResult, Selector

__all__ = [
    "ProbCoverSelector",
    "ball_graph",
    "cover_greedy",
    "probcover_order",
    "purity_delta",
]


def distances(sims: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors from their cosine similarity (float64)."""
    return np.sqrt(np.maximum(2.0 - 2.0 * np.asarray(sims, dtype=np.float64), 0.0))


def purity_delta(
    neighbors: np.ndarray, dist: np.ndarray, labels: np.ndarray, purity: float
) -> tuple[float, bool]:
    """The largest δ with at least `purity` of the δ-balls pure, from a k-NN graph.

    Parameters
    ----------
    neighbors, dist : ndarray of shape (n_images, k)
        Each image's k nearest neighbours, nearest first, and their distances.
    labels : ndarray of shape (n_images,)
        Pseudo-labels (k-means clusters).

    Returns
    -------
    delta : float
    exact : bool
        False when δ was bounded by the graph's reach (a conservative value).

    >>> nb = np.array([[1], [0], [3], [2]]); d = np.array([[.1], [.1], [.2], [.2]])
    >>> purity_delta(nb, d, np.array([0, 1, 1, 1]), 0.5)
    (0.2, False)
    """
    n = len(labels)
    other = labels[neighbors] != labels[:, None]  # (N, k)
    has = other.any(axis=1)
    first = other.argmax(axis=1)
    d_x = np.where(has, dist[np.arange(n), first], dist[:, -1])
    m = math.floor((1.0 - purity) * n + 1e-9)
    m = min(m, n - 1)
    order = np.argsort(d_x, kind="stable")
    delta = float(d_x[order[m]])
    # exact when every image with a lower bound only lies strictly above delta
    exact = bool(np.all(d_x[~has] > delta)) if (~has).any() else True
    return delta, exact


def ball_graph(
    neighbors: np.ndarray, dist: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of the δ-balls: ``indices[indptr[x]:indptr[x+1]]`` is x itself, then the
    neighbours with distance < δ (int64)."""
    n = len(neighbors)
    keep = dist < delta  # (N, k)
    counts = keep.sum(axis=1) + 1
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int64)
    indices[indptr[:-1]] = np.arange(n)
    rows = np.repeat(np.arange(n), keep.sum(axis=1))
    # position of each kept neighbour within its row: after the centre, in neighbour order
    within = np.cumsum(keep, axis=1)[keep]  # 1..count-1
    indices[indptr[rows] + within] = neighbors[keep]
    return indptr, indices


def _transpose(indptr: np.ndarray, indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the reverse graph: for each y, the centres x whose ball holds y."""
    rows = np.repeat(np.arange(n), np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    t_indices = rows[order]
    t_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=n), out=t_indptr[1:])
    return t_indptr, t_indices


# ------------------------------------------------------------------ numba max-heap of keys
@numba.njit(cache=True, nogil=True)
def _heap_push(h: np.ndarray, size: int, key: np.int64) -> int:  # pragma: no cover - jitted
    i = size
    h[i] = key
    while i > 0:
        p = (i - 1) // 2
        if h[p] >= h[i]:
            break
        h[p], h[i] = h[i], h[p]
        i = p
    return size + 1


@numba.njit(cache=True, nogil=True)
def _heap_pop(h: np.ndarray, size: int) -> tuple[np.int64, int]:  # pragma: no cover - jitted
    top = h[0]
    size -= 1
    h[0] = h[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        c = left
        if left + 1 < size and h[left + 1] > h[left]:
            c = left + 1
        if h[i] >= h[c]:
            break
        h[i], h[c] = h[c], h[i]
        i = c
    return top, size


@numba.njit(cache=True, nogil=True)
def _cover(
    indptr: np.ndarray,
    indices: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    covered: np.ndarray,
    chosen: np.ndarray,
    max_picks: int,
    min_gain: int,
) -> np.ndarray:  # pragma: no cover - jitted
    """Greedy max coverage; stops at max_picks or when no ball covers `min_gain` new images.
    Key = degree·(N+1) + (N - index): the max key is the highest degree, lowest index."""
    n = indptr.shape[0] - 1
    deg = np.zeros(n, dtype=np.int64)
    for x in range(n):
        for t in range(indptr[x], indptr[x + 1]):
            if not covered[indices[t]]:
                deg[x] += 1
    heap = np.empty(n, dtype=np.int64)
    size = 0
    for x in range(n):
        if deg[x] >= min_gain and not chosen[x]:
            size = _heap_push(heap, size, np.int64(deg[x] * (n + 1) + (n - x)))
    picks = np.empty(max_picks, dtype=np.int64)
    n_picks = 0
    while n_picks < max_picks and size > 0:
        key, size = _heap_pop(heap, size)
        x = n - key % (n + 1)
        d = key // (n + 1)
        if deg[x] != d:  # stale: degrees only fall, so re-file it with its true degree
            if deg[x] >= min_gain:
                size = _heap_push(heap, size, np.int64(deg[x] * (n + 1) + (n - x)))
            continue
        picks[n_picks] = x
        n_picks += 1
        chosen[x] = True
        for t in range(indptr[x], indptr[x + 1]):
            y = indices[t]
            if not covered[y]:
                covered[y] = True
                for u in range(t_indptr[y], t_indptr[y + 1]):
                    deg[t_indices[u]] -= 1
    return picks[:n_picks]


def cover_greedy(
    indptr: np.ndarray,
    indices: np.ndarray,
    covered: np.ndarray,
    chosen: np.ndarray,
    max_picks: int,
    *,
    min_gain: int = 1,
) -> np.ndarray:
    """Greedy max coverage on ball lists (CSR); updates `covered` and `chosen` in place.
    Stops after `max_picks`, or when no ball would cover `min_gain` uncovered images.

    >>> indptr, indices = np.array([0, 2, 3, 5]), np.array([0, 1, 1, 2, 1])
    >>> cover_greedy(indptr, indices, np.zeros(3, bool), np.zeros(3, bool), 3).tolist()
    [0, 2]
    """
    n = len(indptr) - 1
    t_indptr, t_indices = _transpose(indptr, indices, n)
    return _cover(indptr, indices, t_indptr, t_indices, covered, chosen, max_picks, min_gain)


def probcover_order(
    neighbors: np.ndarray,
    dist: np.ndarray,
    delta: float,
    initial: np.ndarray,
    n_picks: int,
    progress: Callable[[int], None] | None = None,
    *,
    max_rounds: int = 32,
) -> tuple[np.ndarray, list[float]]:
    """Greedy coverage at δ, then at δ/2, δ/4, ... (see the module docstring), then the rest
    by ball size at δ. Returns the picks and the δ of each coverage round.

    A round ends when no ball covers at least two new images (a ball that would cover only
    its own centre is no better than any other choice); the next round halves δ. Rounds stop
    when no unchosen image has a neighbour within δ."""
    n = len(neighbors)
    chosen = np.zeros(n, dtype=bool)
    chosen[initial] = True
    picks: list[np.ndarray] = []
    deltas: list[float] = []
    done = 0
    d = delta
    while done < n_picks and d > 0.0 and len(deltas) < max_rounds:
        indptr, indices = ball_graph(neighbors, dist, d)
        sizes = np.diff(indptr)
        if (sizes[~chosen] <= 1).all():
            break
        covered = np.zeros(n, dtype=bool)
        covered[indices[np.repeat(chosen, sizes)]] = True  # balls of everything chosen
        got = cover_greedy(indptr, indices, covered, chosen, n_picks - done, min_gain=2)
        deltas.append(d)
        picks.append(got)
        done += len(got)
        if progress is not None and len(got):
            progress(len(got))
        d = d / 2.0
    if done < n_picks:
        size0 = (dist < delta).sum(axis=1)
        rest = np.flatnonzero(~chosen)
        rest = rest[np.lexsort((rest, -size0[rest]))][: n_picks - done]
        picks.append(rest)
        if progress is not None:
            progress(len(rest))
    out = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    return out.astype(np.int64), deltas


class ProbCoverSelector(Selector):
    """ProbCover (Yehuda et al., NeurIPS 2022): greedy max coverage of δ-balls, δ chosen
    label-free by k-means purity.

    Parameters
    ----------
    budget : int, optional
        Picks beyond the initial set; None ranks every image.
    seed : int, optional
        Seeds the random initial set and the k-means of the δ choice.
    delta : float, optional
        Ball radius (Euclidean distance between unit embeddings, in (0, 2]); None chooses it
        by purity.
    purity : float
        Share of pure balls δ must keep (the paper: 0.95).
    n_clusters : int
        k-means clusters for the purity test (the paper: the number of classes).
    max_degree : int
        Neighbours kept per ball (the sparse graph's k).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 8))
    >>> sel = ProbCoverSelector(seed=0, budget=5).fit(X, initial=[3])
    >>> sel.order_[0], len(sel.order_)
    (np.int64(3), 6)
    """

    name = "probcover"

    def __init__(
        self,
        *,
        budget: int | None = None,
        seed: int | None = None,
        delta: float | None = None,
        purity: float = 0.95,
        n_clusters: int = 10,
        max_degree: int = 64,
    ) -> None:
        super().__init__(budget=budget, seed=seed)
        self.delta = delta
        self.purity = purity
        self.n_clusters = n_clusters
        self.max_degree = max_degree

    def fit(
        self,
        X: Any,
        *,
        initial: InitialSpec = None,
        progress: Callable[[int], None] | None = None,
    ) -> ProbCoverSelector:
        purity = check_fraction("purity", self.purity, strategy=self.name, low_open=True)
        n_clusters = check_int("n_clusters", self.n_clusters, minimum=2, strategy=self.name)
        max_degree = check_int("max_degree", self.max_degree, minimum=1, strategy=self.name)
        if self.delta is not None and (
            isinstance(self.delta, bool)
            or not isinstance(self.delta, (int, float))
            or not 0.0 < float(self.delta) <= 2.0
        ):
            raise EnrichError(
                f"probcover: delta={self.delta!r}: expected a distance between unit embeddings "
                "in (0, 2] (or leave it out to choose it by purity)"
            )
        Xv, init, n_picks, rng = prepare(X, initial, self.budget, self.seed)
        n = len(Xv)
        if self.delta is None and n_clusters > n:
            raise EnrichError(
                f"probcover: n_clusters={n_clusters} is more than the N={n} images; "
                "expected n_clusters <= N"
            )
        Xn = unit_rows(Xv)
        k = min(max_degree, n - 1)
        neighbors, sims = knn_cosine(Xn, k)
        dist = distances(sims)
        info: dict[str, Any] = {"max_degree": k}
        if self.delta is None:
            labels, _ = kmeans(Xn, n_clusters, rng)
            delta, exact = purity_delta(neighbors, dist, labels, purity)
            info.update(delta_source="purity", delta_exact=exact, n_clusters=n_clusters)
        else:
            delta = float(self.delta)
            info["delta_source"] = "given"
        picks, deltas = probcover_order(neighbors, dist, delta, init, n_picks, progress)
        info.update(delta=delta, deltas=deltas)
        order = np.concatenate([init, picks])
        return self._set_result(  # type: ignore[return-value]
            RankResult(order, np.full(len(order), np.nan), len(init), self.name, self.seed, info)
        )
