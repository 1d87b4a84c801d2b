"""TypiClust: the most typical image of each uncovered cluster (Hacohen, Dekel & Weinshall,
"Active Learning on a Budget: Opposite Strategies Suit High and Low Budgets", ICML 2022).

**What it favours.** Typical images: the centre of each dense region, largest regions
first. It wins at *low* budgets (the paper: a few labels per class, where it beats random and
max-min/"Coreset" selection by a wide margin on CIFAR and ImageNet subsets); at large budgets
the paper itself finds that typical-first selection stops helping and uncertainty-style or
random sampling catch up.

**The rule.** With ``L`` images chosen (the initial set first) and a budget ``B``, cluster the
embeddings into ``K = |L| + B`` groups with k-means; then ``B`` times: take the cluster with
the fewest chosen images (ties: the largest, then the lowest cluster id) and choose its most
*typical* unchosen image,

    typicality(x) = 1 / (mean Euclidean distance from x to its k nearest neighbours + 1e-5),

on unit-normalised embeddings (so distances are cosine distances: ``|a-b|² = 2 - 2 cos``),
k = 20 as in the paper. Clusters with at most ``min_cluster_size`` images (5, as the authors'
code) are used only after every larger cluster is exhausted. ``K`` is capped at
``max_clusters`` (500, as the authors' code); past the cap the rule keeps cycling over the
clusters.

**The full order (staging).** TypiClust is a budget-dependent method, so a full labeling
order is built the way an active-learning run would build it: in rounds, each a TypiClust
round with its own clustering. Round *r* picks ``b_r = max(1, ceil((growth - 1)·|L_r|))``
images (``growth = 2``: the chosen set doubles each round), clusters into ``|L_r| + b_r``
groups, and the last round is cut to what is left of the budget. With a budget no larger than
``(growth - 1)·|L|`` this is exactly one round of the paper's algorithm. Once ``K`` reaches
the cap the clustering is kept and rounds only continue the cycle. Typicality is computed once
on the whole set (the paper's definition; the authors' code recomputes it within each
cluster, which ranks a cluster's members almost identically and would cost a k-NN search per
round).

Deterministic for a seed (k-means++ seeding draws from it); no labels are read.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from enrich.errors import EnrichError
from enrich.select._common import check_int, prepare
from enrich.select._kmeans import kmeans
from enrich.select._knn import knn_cosine, unit_rows
from enrich.select.base import InitialSpec, RankResult, Selector

__all__ = ["TypiClustSelector", "typicality", "typiclust_order"]


def typicality(sims: np.ndarray) -> np.ndarray:
    """Inverse mean Euclidean distance to the k nearest neighbours, from their cosine
    similarities (N, k) -> (N,) float64.

    >>> typicality(np.array([[1.0, 1.0], [0.5, 0.5]])).round(3).tolist()
    [100000.0, 1.0]
    """
    d = np.sqrt(np.maximum(2.0 - 2.0 * sims.astype(np.float64), 0.0))
    return 1.0 / (d.mean(axis=1) + 1e-5)


def typiclust_order(
    typ: np.ndarray,
    initial: np.ndarray,
    n_picks: int,
    cluster: Callable[[int], np.ndarray],
    *,
    growth: float = 2.0,
    max_clusters: int = 500,
    min_cluster_size: int = 5,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[dict[str, int]]]:
    """The staged TypiClust picks. Prior validation assumed.

    Parameters
    ----------
    typ : ndarray of shape (n_images,)
        Typicality of each image.
    initial : ndarray of int
    n_picks : int
    cluster : callable
        ``cluster(K)`` returns labels (n_images,) in 0..K-1 (k-means in practice).

    Returns
    -------
    picks : ndarray of shape (n_picks,), int64
    stages : list of dict
        ``{"clusters": K, "picks": b}`` per round.
    """
    n = len(typ)
    chosen = np.zeros(n, dtype=bool)
    chosen[initial] = True
    n_chosen = len(initial)
    # every image once, most typical first (ties: lowest index)
    by_typ = np.lexsort((np.arange(n), -typ))
    picks: list[int] = []
    stages: list[dict[str, int]] = []
    labels: np.ndarray | None = None
    K_prev = -1
    members: list[np.ndarray] = []
    pointer = np.zeros(0, dtype=np.int64)
    while len(picks) < n_picks:
        b = max(1, math.ceil((growth - 1.0) * n_chosen))
        b = min(b, n_picks - len(picks))
        K = min(n_chosen + b, max_clusters, n)
        if K != K_prev or labels is None:
            labels = np.asarray(cluster(K), dtype=np.int64)
            lab_sorted = labels[by_typ]
            order = np.argsort(lab_sorted, kind="stable")  # by cluster, typical first within
            cuts = np.searchsorted(lab_sorted[order], np.arange(K + 1))
            members = [by_typ[order[cuts[c] : cuts[c + 1]]] for c in range(K)]
            pointer = np.zeros(K, dtype=np.int64)
            K_prev = K
        sizes = np.bincount(labels, minlength=K)
        counts = np.bincount(labels[chosen], minlength=K)
        heap = [
            (int(sizes[c] <= min_cluster_size), int(counts[c]), -int(sizes[c]), c)
            for c in range(K)
            if counts[c] < sizes[c]
        ]
        heapq.heapify(heap)
        stage_picks = 0
        while stage_picks < b and heap:
            small, cnt, neg_size, c = heapq.heappop(heap)
            mem = members[c]
            p = int(pointer[c])
            while chosen[mem[p]]:
                p += 1
            j = int(mem[p])
            pointer[c] = p + 1
            chosen[j] = True
            picks.append(j)
            stage_picks += 1
            if cnt + 1 < -neg_size:
                heapq.heappush(heap, (small, cnt + 1, neg_size, c))
        n_chosen += stage_picks
        stages.append({"clusters": int(K), "picks": stage_picks})
        if progress is not None:
            progress(stage_picks)
    return np.asarray(picks, dtype=np.int64), stages


class TypiClustSelector(Selector):
    """TypiClust (Hacohen et al., ICML 2022): the most typical image of the largest
    uncovered k-means cluster, in rounds that double the chosen set.

    Parameters
    ----------
    budget : int, optional
        Picks beyond the initial set; None ranks every image.
    seed : int, optional
        Seeds the random initial set and k-means.
    k : int
        Neighbours for typicality (the paper: 20).
    max_clusters : int
        Cap on k-means clusters (the authors' code: 500).
    min_cluster_size : int
        Clusters this small are used last (the authors' code: 5).
    growth : float
        Each round grows the chosen set by this factor (> 1).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 8))
    >>> sel = TypiClustSelector(seed=0, budget=5).fit(X, initial=[3])
    >>> sel.order_[0], len(sel.order_)
    (np.int64(3), 6)
    """

    name = "typiclust"

    def __init__(
        self,
        *,
        budget: int | None = None,
        seed: int | None = None,
        k: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        growth: float = 2.0,
    ) -> None:
        super().__init__(budget=budget, seed=seed)
        self.k = k
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.growth = growth

    def fit(
        self,
        X: Any,
        *,
        initial: InitialSpec = None,
        progress: Callable[[int], None] | None = None,
    ) -> TypiClustSelector:
        k = check_int("k", self.k, minimum=1, strategy=self.name)
        max_clusters = check_int("max_clusters", self.max_clusters, minimum=1, strategy=self.name)
        min_size = check_int(
            "min_cluster_size", self.min_cluster_size, minimum=0, strategy=self.name
        )
        if isinstance(self.growth, bool) or not (
            isinstance(self.growth, (int, float)) and 1.0 < float(self.growth) <= 100.0
        ):
            raise EnrichError(f"typiclust: growth={self.growth!r}: expected a number in (1, 100]")
        Xv, init, n_picks, rng = prepare(X, initial, self.budget, self.seed)
        n = len(Xv)
        Xn = unit_rows(Xv)
        k_eff = min(k, n - 1)
        _, sims = knn_cosine(Xn, k_eff)
        typ = typicality(sims)
        picks, stages = typiclust_order(
            typ,
            init,
            n_picks,
            lambda K: kmeans(Xn, K, rng)[0],
            growth=float(self.growth),
            max_clusters=max_clusters,
            min_cluster_size=min_size,
            progress=progress,
        )
        order = np.concatenate([init, picks])
        info = {"k": k_eff, "stages": stages}
        sims_out = np.full(len(order), np.nan)
        return self._set_result(  # type: ignore[return-value]
            RankResult(order, sims_out, len(init), self.name, self.seed, info)
        )
