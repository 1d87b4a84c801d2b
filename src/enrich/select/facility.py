"""Facility location: the images that best *represent* the rest, optionally mixed with
max-min diversity as MedCAL-Bench's RepDiv.

**What it favours.** Representative images: each new pick is the one that most raises how
well every image is represented by its most similar chosen image,

    f(S) = sum over images i of max over chosen j of w(i, j),

the facility-location objective (Mirchandani & Francis 1990; for data selection: Lin & Bilmes
2011, Wei, Iyer & Bilmes 2015, the `apricot` package). Greedy selection gets within
``1 - 1/e`` of the best set of every size (Nemhauser, Wolsey & Fisher 1978). It favours dense,
typical images first and then the next-largest unrepresented groups; unlike ENRICH it never
chases an isolated outlier early, because an outlier represents only itself. MedCAL-Bench
(Zhu et al. 2025, 7 medical datasets, 14 foundation-model embedders) found its RepDiv
selection, facility location followed by max-min diversity, the best cold-start strategy for
classification.

**Similarity.** ``w(i, j)`` is the cosine similarity clipped at 0 between *i* and each of its
``k`` nearest neighbours (k = 20; symmetrised: an edge in either k-NN list counts), and 1 for
``i = j``; every other pair is 0. So memory is O(N·k), never N×N, and the greedy gains are
sums over a neighbourhood. Lazy greedy (Minoux 1978): gains only shrink as the set grows, so a
stale gain is an upper bound and most candidates are never re-evaluated; the order is exactly
the greedy order (ties: the lowest index).

**The RepDiv mix** (``diversity`` in [0, 1), default 0 = pure facility location). MedCAL-Bench
picks the first 70% of a budget by facility location and the last 30% by diversity. A labeling
order must be good at every prefix, so we interleave instead: pick *t* (1-based, after the
initial set) is a diversity pick whenever ``floor(diversity · t)`` grows, else a facility
pick; every prefix then holds about ``diversity`` of diversity picks (``diversity = 0.3`` is
RepDiv's mix, registered on its own as ``repdiv``). A diversity pick is ENRICH's rule, the
image with the lowest maximum cosine similarity to everything chosen so far (exact, over all
images); the benchmark's code scores the *largest* distance to any chosen image, which we read
as a slip for the k-center rule.
Both kinds of pick update the facility state. A diversity pick costs one pass over the
embeddings, so ``diversity > 0`` is slower on large sets.

Deterministic (no randomness beyond the initial set); no labels are read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from enrich.select._common import check_fraction, check_int, prepare
from enrich.select._knn import knn_cosine, unit_rows
from enrich.select.base import InitialSpec, RankResult, Selector

__all__ = ["FacilitySelector", "RepDivSelector", "facility_order", "similarity_graph"]


def similarity_graph(
    neighbors: np.ndarray, sims: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric sparse similarity (CSR, rows sorted by column) from a k-NN graph: cosine
    clipped at 0 on every k-NN edge in either direction, 1 on the diagonal.

    Returns indptr (N+1,), indices (nnz,) int64, data (nnz,) float64.
    """
    from scipy import sparse

    n, k = neighbors.shape
    rows = np.repeat(np.arange(n), k)
    W = sparse.csr_matrix(
        (np.maximum(sims.ravel().astype(np.float64), 0.0), (rows, neighbors.ravel())),
        shape=(n, n),
    )
    # no self edges in a k-NN list, so the symmetric part has an empty diagonal: add 1 there
    W = (W.maximum(W.T) + sparse.identity(n, format="csr")).tocsr()
    W.sort_indices()
    return (
        W.indptr.astype(np.int64),
        W.indices.astype(np.int64),
        W.data.astype(np.float64),
    )


@numba.njit(cache=True, nogil=True)
def _gain(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, cur: np.ndarray, j: int
) -> float:  # pragma: no cover - jitted
    g = 0.0
    for t in range(indptr[j], indptr[j + 1]):
        d = data[t] - cur[indices[t]]
        if d > 0.0:
            g += d
    return g


@numba.njit(cache=True, nogil=True)
def _add(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, cur: np.ndarray, j: int
) -> None:  # pragma: no cover - jitted
    for t in range(indptr[j], indptr[j + 1]):
        i = indices[t]
        if data[t] > cur[i]:
            cur[i] = data[t]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _fold_max(Xn: np.ndarray, s: np.ndarray, picks: np.ndarray) -> None:  # pragma: no cover
    """s[i] = max(s[i], max over picks p of Xn[i] . Xn[p]), single-threaded: for the few
    picks between two diversity picks a BLAS call costs more in thread wake-ups."""
    d = Xn.shape[1]
    for i in range(Xn.shape[0]):
        best = s[i]
        for p in picks:
            acc = np.float32(0.0)
            for t in range(d):
                acc += Xn[i, t] * Xn[p, t]
            if acc > best:
                best = acc
        s[i] = best


@numba.njit(cache=True, nogil=True)
def _better(va: float, ia: int, vb: float, ib: int) -> bool:  # pragma: no cover - jitted
    return va > vb or (va == vb and ia < ib)


@numba.njit(cache=True, nogil=True)
def _sift_down(hv: np.ndarray, hi: np.ndarray, size: int, i: int) -> None:  # pragma: no cover
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        c = left
        if left + 1 < size and _better(hv[left + 1], hi[left + 1], hv[left], hi[left]):
            c = left + 1
        if not _better(hv[c], hi[c], hv[i], hi[i]):
            return
        hv[i], hv[c] = hv[c], hv[i]
        hi[i], hi[c] = hi[c], hi[i]
        i = c


@numba.njit(cache=True, nogil=True)
def _lazy_greedy(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    cur: np.ndarray,
    chosen: np.ndarray,
    hv: np.ndarray,
    hi: np.ndarray,
    size: int,
) -> tuple[int, int]:  # pragma: no cover - jitted
    """Pop the best candidate by its true gain (lazy re-evaluation); returns (index, size).
    The heap (hv: bounds, hi: indices) is a max-heap by (bound, -index)."""
    while size > 0:
        j = hi[0]
        if chosen[j]:  # taken by a diversity pick: drop it
            size -= 1
            hv[0] = hv[size]
            hi[0] = hi[size]
            _sift_down(hv, hi, size, 0)
            continue
        g = _gain(indptr, indices, data, cur, j)
        if g == hv[0]:
            size -= 1
            hv[0] = hv[size]
            hi[0] = hi[size]
            _sift_down(hv, hi, size, 0)
            return j, size
        hv[0] = g  # a smaller, fresh bound: re-file it
        _sift_down(hv, hi, size, 0)
    return -1, size


def facility_order(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    initial: np.ndarray,
    n_picks: int,
    *,
    diversity: float = 0.0,
    Xn: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lazy-greedy facility location on a sparse similarity (CSR), interleaved with max-min
    picks when ``diversity > 0`` (then `Xn`, the unit rows, is needed).

    Returns
    -------
    picks : ndarray of shape (n_picks,), int64
    gains : ndarray of shape (n_picks,), float64
        Each facility pick's gain; for a diversity pick, minus its max similarity to the set
        chosen before it.
    """
    n = len(indptr) - 1
    if diversity > 0.0 and Xn is None:
        raise ValueError("facility_order: diversity > 0 needs Xn, the unit embeddings")
    cur = np.zeros(n, dtype=np.float64)
    chosen = np.zeros(n, dtype=bool)
    for j in initial:
        _add(indptr, indices, data, cur, int(j))
        chosen[j] = True
    # initial bounds: exact gains, heapified
    gains0 = np.array([_gain(indptr, indices, data, cur, j) for j in range(n)])
    cand = np.flatnonzero(~chosen)
    order = np.lexsort((cand, -gains0[cand]))  # a sorted array is a valid max-heap
    hi = cand[order].astype(np.int64)
    hv = gains0[hi].copy()
    size = len(hi)
    picks = np.empty(n_picks, dtype=np.int64)
    gains = np.empty(n_picks, dtype=np.float64)
    s = None
    if diversity > 0.0 and Xn is not None:
        s = np.full(n, -np.inf, dtype=np.float32)
        for a in range(0, len(initial), 256):
            np.maximum(s, (Xn @ Xn[initial[a : a + 256]].T).max(axis=1), out=s)
    pending: list[int] = []  # picks not yet folded into s
    n_div = 0
    step = max(1, n_picks // 100)
    reported = 0
    for t in range(n_picks):
        if s is not None and math.floor(diversity * (t + 1) + 1e-9) > n_div:
            _fold_max(Xn, s, np.asarray(pending, dtype=np.int64))  # type: ignore[arg-type]
            pending = []
            masked = np.where(chosen, np.inf, s)
            j = int(np.argmin(masked))
            gains[t] = -float(masked[j])
            n_div += 1
        else:
            j, size = _lazy_greedy(indptr, indices, data, cur, chosen, hv, hi, size)
            if j < 0:  # every image chosen already (cannot happen with a valid budget)
                raise RuntimeError("facility: ran out of candidates")
            gains[t] = _gain(indptr, indices, data, cur, j)
        picks[t] = j
        chosen[j] = True
        _add(indptr, indices, data, cur, j)
        pending.append(j)
        if progress is not None and ((t + 1) % step == 0 or t + 1 == n_picks):
            progress((t + 1) - reported)
            reported = t + 1
    return picks, gains


class FacilitySelector(Selector):
    """Greedy facility location on a sparse cosine k-NN similarity (lazy greedy), optionally
    interleaved with max-min diversity picks (MedCAL-Bench's RepDiv).

    Parameters
    ----------
    budget : int, optional
        Picks beyond the initial set; None ranks every image.
    seed : int, optional
        Seeds the random initial set (the picks themselves are deterministic).
    k : int
        Neighbours per image in the sparse similarity.
    diversity : float
        Share of diversity (max-min) picks in [0, 1); 0.3 is RepDiv's mix.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 8))
    >>> sel = FacilitySelector(seed=0, budget=5).fit(X, initial=[3])
    >>> sel.order_[0], len(sel.order_)
    (np.int64(3), 6)
    """

    name = "facility"

    def __init__(
        self,
        *,
        budget: int | None = None,
        seed: int | None = None,
        k: int = 20,
        diversity: float = 0.0,
    ) -> None:
        super().__init__(budget=budget, seed=seed)
        self.k = k
        self.diversity = diversity

    def fit(
        self,
        X: Any,
        *,
        initial: InitialSpec = None,
        progress: Callable[[int], None] | None = None,
    ) -> FacilitySelector:
        k = check_int("k", self.k, minimum=1, strategy=self.name)
        diversity = check_fraction("diversity", self.diversity, strategy=self.name, high_open=True)
        Xv, init, n_picks, _ = prepare(X, initial, self.budget, self.seed)
        Xn = unit_rows(Xv)
        k_eff = min(k, len(Xn) - 1)
        neighbors, sims = knn_cosine(Xn, k_eff)
        indptr, indices, data = similarity_graph(neighbors, sims)
        picks, _gains = facility_order(
            indptr, indices, data, init, n_picks, diversity=diversity, Xn=Xn, progress=progress
        )
        order = np.concatenate([init, picks])
        info = {"k": k_eff, "diversity": diversity, "nnz": len(indices)}
        return self._set_result(  # type: ignore[return-value]
            RankResult(order, np.full(len(order), np.nan), len(init), self.name, self.seed, info)
        )


class RepDivSelector(FacilitySelector):
    """MedCAL-Bench's RepDiv mix under its own name: facility location with 30% max-min
    diversity picks interleaved (``FacilitySelector(diversity=0.3)``), so that a benchmark
    can compare it with plain facility location in one run.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(100, 8))
    >>> RepDivSelector(budget=4).fit(X, initial=[0]).result_.info["diversity"]
    0.3
    """

    name = "repdiv"

    def __init__(
        self,
        *,
        budget: int | None = None,
        seed: int | None = None,
        k: int = 20,
        diversity: float = 0.3,
    ) -> None:
        super().__init__(budget=budget, seed=seed, k=k, diversity=diversity)
