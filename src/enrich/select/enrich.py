"""ENRICH ranking: the exact greedy max-min order (Chinn et al. 2023)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from enrich._outputs import check_seed
from enrich.embeddings import check_vectors
from enrich.errors import EnrichError
from enrich.select._greedy import GreedyState, greedy_order
from enrich.select.base import InitialSpec, RankResult, Selector, resolve_budget, resolve_initial

__all__ = ["EnrichSelector", "rank_precomputed"]

METRICS = ("cosine", "precomputed")


class EnrichSelector(Selector):
    """Least-redundant-first ordering.

    Starting from a seed set, repeatedly add the image whose maximum cosine similarity to
    the chosen set is lowest (ties to the lowest index). Exact, O(N·d) memory.

    Parameters
    ----------
    budget : int, optional
        Picks beyond the initial set; None ranks every image.
    seed : int, optional
        Seeds the random initial set.
    metric : {"cosine", "precomputed"}
        "precomputed" takes a square similarity matrix instead of embeddings.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> sel = EnrichSelector(seed=0, budget=3).fit(X, initial=[0, 1])
    >>> sel.order_[:2].tolist(), len(sel.order_)
    ([0, 1], 5)
    """

    name = "enrich"

    def __init__(
        self,
        *,
        budget: int | None = None,
        seed: int | None = None,
        metric: str = "cosine",
        method: str = "auto",
    ) -> None:
        super().__init__(budget=budget, seed=seed)
        self.metric = metric
        self.method = method

    def fit(
        self,
        X: Any,
        *,
        initial: InitialSpec = None,
        progress: Callable[[int], None] | None = None,
    ) -> EnrichSelector:
        if self.metric not in METRICS:
            raise EnrichError(f"metric={self.metric!r}: expected one of {', '.join(METRICS)}")
        rng = np.random.default_rng(check_seed(self.seed))
        if self.metric == "precomputed":
            S = _check_square(X)
            init = resolve_initial(initial, len(S), rng)
            k = resolve_budget(self.budget, len(S), len(init))
            picks, sims = rank_precomputed(S, init, k)
            info: dict[str, Any] = {"path": "precomputed"}
        else:
            Xv = check_vectors(X)
            init = resolve_initial(initial, len(Xv), rng)
            k = resolve_budget(self.budget, len(Xv), len(init))
            state = GreedyState()
            picks, sims = greedy_order(
                Xv, init, k, method=self.method, progress=progress, state=state
            )
            info = vars(state)
        order = np.concatenate([init, picks])
        max_sim = np.concatenate([np.full(len(init), np.nan), sims])
        return self._set_result(RankResult(order, max_sim, len(init), self.name, self.seed, info))  # type: ignore[return-value]


def _check_square(S: Any) -> np.ndarray:
    arr = np.asarray(S, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise EnrichError(
            f"metric='precomputed' needs a square (N, N) matrix, got shape {arr.shape}"
        )
    if arr.shape[0] < 2:
        raise EnrichError(f"similarity matrix has N={arr.shape[0]}: need at least 2 images")
    if not np.isfinite(arr).all():
        raise EnrichError("similarity matrix has NaN or inf entries")
    if not np.allclose(arr, arr.T, atol=1e-8):
        raise EnrichError("similarity matrix is not symmetric")
    return arr


def rank_precomputed(
    S: np.ndarray, initial: np.ndarray, n_picks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy max-min picks from a square similarity matrix. Prior validation assumed.

    >>> S = np.array([[1, .9, .1], [.9, 1, .2], [.1, .2, 1]])
    >>> rank_precomputed(S, np.array([0]), 2)[0].tolist()
    [2, 1]
    """
    s = S[initial].max(axis=0).astype(np.float64)
    s[initial] = np.inf
    picks = np.empty(n_picks, dtype=np.int64)
    sims = np.empty(n_picks, dtype=np.float64)
    for t in range(n_picks):
        j = int(np.argmin(s))  # first minimum = lowest index
        picks[t], sims[t] = j, s[j]
        np.maximum(s, S[j], out=s)
        s[j] = np.inf
    return picks, sims
