"""ENRICH with a density guard: the exact ENRICH order over the images that are not outliers,
then the outliers (an experiment against ENRICH's outlier-first weakness).

**Why.** ENRICH's max-min rule (k-center, "Coreset") picks the image least similar to
everything chosen so far, so at small budgets it chooses outliers first: blurred frames,
artefacts, rare views. The cold-start literature reports that this is what makes max-min lose
to random at low budgets (Hacohen et al. 2022; Yehuda et al. 2022; MedCAL-Bench 2025).

**The guard.** Each image's density is its mean cosine similarity to its ``k`` nearest
neighbours (k = 20). The ``outlier_fraction`` least dense images (default 10%, ties by index)
are held back; ENRICH ranks the others exactly as :class:`EnrichSelector` would if they were
the whole set (the initial set included, outlier or not), and the held-back images follow,
ranked by the same ENRICH rule against everything chosen before them. Without an initial set
the order starts from the densest image (a medoid-like start) instead of a random one.

**When it wins** (hypothesis, to be measured by ``enrich benchmark``): where ENRICH alone
trails random because its first picks are outliers; with ``outlier_fraction = 0`` it is
ENRICH itself.

``max_similarity_`` is exact ENRICH's value for every pick (its max cosine similarity to the
images chosen before it). Deterministic for a seed; no labels are read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from enrich.embeddings import check_vectors
from enrich.select._common import check_fraction, check_int
from enrich.select._greedy import greedy_order
from enrich.select._knn import knn_cosine, unit_rows
from enrich.select.base import InitialSpec, RankResult, Selector, resolve_budget, resolve_initial

__all__ = ["DenseEnrichSelector", "outliers_by_density"]


def outliers_by_density(sims: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The least dense images by mean k-NN cosine similarity.

    Parameters
    ----------
    sims : ndarray of shape (n_images, k)
        Similarities to each image's k nearest neighbours.
    fraction : float
        Share of images to flag, in [0, 1).

    Returns
    -------
    outlier : ndarray of shape (n_images,), bool
    density : ndarray of shape (n_images,), float64

    >>> outliers_by_density(np.array([[0.9], [0.1], [0.8], [0.7]]), 0.25)[0].tolist()
    [False, True, False, False]
    """
    density = sims.astype(np.float64).mean(axis=1)
    n = len(density)
    m = int(np.floor(fraction * n + 1e-9))
    outlier = np.zeros(n, dtype=bool)
    if m:
        order = np.lexsort((np.arange(n), density))  # least dense first, ties by index
        outlier[order[:m]] = True
    return outlier, density


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _tail_kernel(
    R: np.ndarray, s: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - jitted
    """ENRICH's greedy among the rows of R, from running maxima s (float64): pick the lowest s
    (ties: the first row), raise s with its float64 dot products. (k,), (k,)."""
    m, d = R.shape
    picks = np.empty(k, dtype=np.int64)
    vals = np.empty(k, dtype=np.float64)
    for t in range(k):
        j = 0
        best = np.inf
        for i in range(m):
            if s[i] < best:
                best = s[i]
                j = i
        picks[t] = j
        vals[t] = best
        s[j] = np.inf
        for i in range(m):
            if s[i] == np.inf:
                continue
            acc = 0.0
            for c in range(d):
                acc += np.float64(R[i, c]) * np.float64(R[j, c])
            if acc > s[i]:
                s[i] = acc
    return picks, vals


def _tail(
    Xn: np.ndarray, chosen: np.ndarray, k: int, progress: Callable[[int], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """The remaining images in ENRICH order given everything chosen: one blocked GEMM for
    their similarity to the chosen set (rest x chosen, not N x chosen), then the greedy among
    them alone. Returns original indices and max similarities at pick."""
    taken = np.zeros(len(Xn), dtype=bool)
    taken[chosen] = True
    rest = np.flatnonzero(~taken)  # ascending: ties go to the lowest original index
    R = np.ascontiguousarray(Xn[rest])
    s = np.full(len(rest), -np.inf)
    for a in range(0, len(chosen), 4096):
        np.maximum(s, (R @ Xn[chosen[a : a + 4096]].T).max(axis=1), out=s)
    picks, vals = _tail_kernel(R, s, k)
    if progress is not None:
        progress(k)
    return rest[picks], vals


class DenseEnrichSelector(Selector):
    """ENRICH over the non-outliers by k-NN density first, then the outliers.

    Parameters
    ----------
    budget : int, optional
        Picks beyond the initial set; None ranks every image.
    seed : int, optional
        Seeds the random initial set.
    k : int
        Neighbours for the density.
    outlier_fraction : float
        Share of least dense images held back, in [0, 1).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 8))
    >>> sel = DenseEnrichSelector(seed=0, budget=5).fit(X, initial=[3])
    >>> sel.order_[0], len(sel.order_)
    (np.int64(3), 6)
    """

    name = "enrich_dense"

    def __init__(
        self,
        *,
        budget: int | None = None,
        seed: int | None = None,
        k: int = 20,
        outlier_fraction: float = 0.1,
    ) -> None:
        super().__init__(budget=budget, seed=seed)
        self.k = k
        self.outlier_fraction = outlier_fraction

    def fit(
        self,
        X: Any,
        *,
        initial: InitialSpec = None,
        progress: Callable[[int], None] | None = None,
    ) -> DenseEnrichSelector:
        k = check_int("k", self.k, minimum=1, strategy=self.name)
        frac = check_fraction(
            "outlier_fraction", self.outlier_fraction, strategy=self.name, high_open=True
        )
        Xv = check_vectors(X)
        n = len(Xv)
        rng = np.random.default_rng(self.seed)
        Xn = unit_rows(Xv)
        k_eff = min(k, n - 1)
        _, sims = knn_cosine(Xn, k_eff)
        outlier, density = outliers_by_density(sims, frac)
        if initial is None:
            init = np.array([int(np.lexsort((np.arange(n), -density))[0])], dtype=np.int64)
        else:
            init = resolve_initial(initial, n, rng)
        n_picks = resolve_budget(self.budget, n, len(init))

        # phase 1: ENRICH on the inliers plus the initial set, as if they were the whole set
        keep = ~outlier
        keep[init] = True
        sub = np.flatnonzero(keep)
        pos = np.full(n, -1, dtype=np.int64)
        pos[sub] = np.arange(len(sub))
        k1 = min(n_picks, len(sub) - len(init))
        picks_parts, sims_parts = [], []
        if k1 > 0:
            p1, s1 = greedy_order(Xv[sub], pos[init], k1, progress=progress)
            picks_parts.append(sub[p1])
            sims_parts.append(s1)
        # phase 2: the held-back images, by the same rule against everything chosen
        k2 = n_picks - k1
        if k2 > 0:
            chosen = np.concatenate([init, *picks_parts])
            p2, s2 = _tail(Xn, chosen, k2, progress)
            picks_parts.append(p2)
            sims_parts.append(s2)
        picks = np.concatenate(picks_parts) if picks_parts else np.zeros(0, dtype=np.int64)
        sims_out = np.concatenate([np.full(len(init), np.nan), *sims_parts])
        order = np.concatenate([init, picks]).astype(np.int64)
        info = {
            "k": k_eff,
            "n_outliers": int(outlier.sum()),
            "start": ("densest" if initial is None else "given"),
        }
        return self._set_result(  # type: ignore[return-value]
            RankResult(order, sims_out, len(init), self.name, self.seed, info)
        )
