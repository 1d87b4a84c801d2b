"""The random baseline: the paper's negative control."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from enrich._outputs import check_seed
from enrich.errors import EnrichError
from enrich.select.base import InitialSpec, RankResult, Selector, resolve_budget, resolve_initial

__all__ = ["RandomSelector"]


class RandomSelector(Selector):
    """Uniformly random order after the seed set; `max_similarity_` is NaN (not computed).

    Examples
    --------
    >>> RandomSelector(seed=0).fit(np.zeros((5, 2)) + 1, initial=[4]).order_[0]
    np.int64(4)
    """

    name = "random"

    def fit(
        self, X: Any, *, initial: InitialSpec = None, progress: Callable[[int], None] | None = None
    ) -> RandomSelector:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise EnrichError(f"X has shape {arr.shape}: expected a 2-D (N, d) array")
        n = len(arr)
        if n < 2:
            raise EnrichError(f"X has N={n} rows: need at least 2 images")
        rng = np.random.default_rng(check_seed(self.seed))
        init = resolve_initial(initial, n, rng)
        k = resolve_budget(self.budget, n, len(init))
        rest = np.setdiff1d(np.arange(n), init)
        picks = rng.permutation(rest)[:k]
        order = np.concatenate([init, picks]).astype(np.int64)
        sims = np.full(len(order), np.nan)
        if progress is not None:
            progress(len(picks))
        return self._set_result(RankResult(order, sims, len(init), self.name, self.seed))  # type: ignore[return-value]
