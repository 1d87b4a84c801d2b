"""Selector interface and the seed-set rules shared by every strategy."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from enrich.errors import EnrichError, first_few

__all__ = ["InitialSpec", "RankResult", "Selector", "resolve_budget", "resolve_initial"]

InitialSpec = float | int | np.ndarray | list[int] | tuple[int, ...] | None


@dataclass(frozen=True)
class RankResult:
    """A labeling order.

    Attributes
    ----------
    order : ndarray of shape (n_ranked,), int64
        Image indices: the initial set first, then the picks. Rank 0 is labelled first.
    max_similarity : ndarray of shape (n_ranked,), float64
        For each pick, its max similarity to the set chosen before it; NaN for the
        initial images (and for strategies that do not compute it).
    n_initial : int
        How many leading entries of `order` are the initial set.
    method : str
        The strategy name.
    seed : int or None
    """

    order: np.ndarray
    max_similarity: np.ndarray
    n_initial: int
    method: str
    seed: int | None = None
    info: dict[str, Any] | None = None

    @property
    def initial(self) -> np.ndarray:
        """Boolean mask over `order`: True for the initial (seed or already labeled) images."""
        mask = np.zeros(len(self.order), dtype=bool)
        mask[: self.n_initial] = True
        return mask

    @property
    def picks(self) -> np.ndarray:
        return self.order[self.n_initial :]


def resolve_initial(initial: InitialSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """Turn the `initial` argument into distinct indices (int64), validated.

    - float in (0, 1): that fraction of N at random (at least one image);
    - int: that many at random;
    - array-like of ints: exactly those indices, in that order;
    - None: one random image.

    >>> resolve_initial([3, 1], 5, np.random.default_rng(0))
    array([3, 1])
    """
    if initial is None:
        return rng.choice(n, size=1, replace=False).astype(np.int64)
    if isinstance(initial, bool):
        raise EnrichError(f"initial={initial!r}: expected a fraction, a count or indices")
    if isinstance(initial, numbers.Integral):
        k = int(initial)
        if not 1 <= k <= n:
            raise EnrichError(f"initial={k} images is out of range: expected 1 <= initial <= N={n}")
        return rng.choice(n, size=k, replace=False).astype(np.int64)
    if isinstance(initial, numbers.Real):
        f = float(initial)
        if not 0.0 < f < 1.0:
            raise EnrichError(
                f"initial={f} is out of range: a fraction must be in (0, 1), "
                "or give a whole count or indices"
            )
        k = max(1, round(f * n))
        return rng.choice(n, size=k, replace=False).astype(np.int64)
    idx = np.asarray(initial)
    if idx.ndim != 1:
        raise EnrichError(f"initial indices have shape {idx.shape}: expected a 1-D list")
    if idx.size == 0:
        raise EnrichError("initial is an empty list: give at least one index, or None")
    if not np.issubdtype(idx.dtype, np.integer):
        raise EnrichError(f"initial indices have dtype {idx.dtype}: expected integers")
    idx = idx.astype(np.int64)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise EnrichError(f"initial indices out of range 0..{n - 1}: {first_few(bad)}")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise EnrichError(f"initial indices repeat: {first_few(uniq[counts > 1])}")
    return idx


def resolve_budget(budget: int | None, n: int, n_initial: int) -> int:
    """Picks to make beyond the initial set; None means rank everything."""
    available = n - n_initial
    if budget is None:
        return available
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise EnrichError(f"budget={budget!r}: expected a whole number of images")
    if budget < 0:
        raise EnrichError(f"budget={budget} is negative: expected 0 <= budget <= {available}")
    if budget > available:
        raise EnrichError(
            f"budget={budget} is larger than the {available} images left after the initial "
            f"set (N={n}, initial={n_initial})"
        )
    return int(budget)


class Selector:
    """Base class: sklearn-style. ``__init__`` stores arguments; ``fit`` sets
    ``order_``, ``max_similarity_`` and ``n_initial_``."""

    name = "base"

    def __init__(self, *, budget: int | None = None, seed: int | None = None) -> None:
        self.budget = budget
        self.seed = seed

    def fit(
        self, X: Any, *, initial: InitialSpec = None, progress: Callable[[int], None] | None = None
    ) -> Selector:  # pragma: no cover
        raise NotImplementedError

    def _set_result(self, result: RankResult) -> Selector:
        self.result_ = result
        self.order_ = result.order
        self.max_similarity_ = result.max_similarity
        self.n_initial_ = result.n_initial
        return self

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}
