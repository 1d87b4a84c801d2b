"""Selection strategies: a name -> class registry, and :func:`rank`.

Strategy classes are imported on first use (``SELECTORS[name]`` or attribute access), so
importing this package, and so ``enrich rank --help``, needs neither numba nor numpy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from enrich.select.registry import SELECTORS, STRATEGIES

if TYPE_CHECKING:
    from enrich.select.base import InitialSpec, RankResult, Selector
    from enrich.select.enrich import EnrichSelector
    from enrich.select.enrich_dense import DenseEnrichSelector
    from enrich.select.facility import FacilitySelector, RepDivSelector
    from enrich.select.probcover import ProbCoverSelector
    from enrich.select.random import RandomSelector
    from enrich.select.typiclust import TypiClustSelector

__all__ = [
    "SELECTORS",
    "STRATEGIES",
    "DenseEnrichSelector",
    "EnrichSelector",
    "FacilitySelector",
    "ProbCoverSelector",
    "RandomSelector",
    "RankResult",
    "RepDivSelector",
    "Selector",
    "TypiClustSelector",
    "rank",
]

_LAZY = {
    "RankResult": "enrich.select.base",
    "Selector": "enrich.select.base",
    "InitialSpec": "enrich.select.base",
    **{s.cls: s.module for s in STRATEGIES.values()},
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'enrich.select' has no attribute {name!r}")


def rank(
    X: Any,
    *,
    initial: InitialSpec = None,
    budget: int | None = None,
    seed: int | None = None,
    metric: str = "cosine",
    progress: Callable[[int], None] | None = None,
) -> RankResult:
    """The ENRICH labeling order.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims), or (n_images, n_images) if precomputed
        Embeddings (any model's), or a square similarity matrix with ``metric="precomputed"``.
    initial : float, int, array-like of int, or None
        A fraction in (0, 1) or a count of random seed images, explicit indices (e.g. the
        images already labeled), or None for one random image.
    budget : int, optional
        Images to pick beyond the initial set; None ranks all of them.
    seed : int, optional
        Seeds the random initial set. The picks themselves are deterministic.
    metric : {"cosine", "precomputed"}

    Returns
    -------
    RankResult
        ``order`` (initial set first, then picks) and ``max_similarity`` (NaN for the
        initial set).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 16))
    >>> r = rank(X, initial=0.05, budget=10, seed=1)
    >>> len(r.order), r.n_initial
    (20, 10)
    """
    from enrich.select.enrich import EnrichSelector

    sel = EnrichSelector(budget=budget, seed=seed, metric=metric).fit(
        X, initial=initial, progress=progress
    )
    return sel.result_
