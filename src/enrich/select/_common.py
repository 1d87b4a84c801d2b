"""The fit prologue shared by the label-free strategies: validate, seed, resolve the sets."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError
from enrich.select.base import InitialSpec, resolve_budget, resolve_initial

__all__ = ["check_fraction", "check_int", "prepare"]


def prepare(
    X: Any, initial: InitialSpec, budget: int | None, seed: int | None
) -> tuple[np.ndarray, np.ndarray, int, np.random.Generator]:
    """Validated float32 embeddings (N, d), the initial indices, the number of picks and the
    generator (the initial set is drawn from it first, exactly as :class:`EnrichSelector`
    does, so every strategy gets the same random seed set for the same seed)."""
    Xv = check_vectors(X)
    rng = np.random.default_rng(seed)
    init = resolve_initial(initial, len(Xv), rng)
    k = resolve_budget(budget, len(Xv), len(init))
    return Xv, init, k, rng


def check_int(name: str, value: Any, *, minimum: int, strategy: str) -> int:
    """A whole-number parameter >= `minimum`, or one line naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise EnrichError(f"{strategy}: {name}={value!r}: expected a whole number >= {minimum}")
    return int(value)


def check_fraction(
    name: str, value: Any, *, strategy: str, low_open: bool = False, high_open: bool = False
) -> float:
    """A number in [0, 1] (ends excluded where asked), or one line naming it."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")
    lo_ok = v > 0.0 if low_open else v >= 0.0
    hi_ok = v < 1.0 if high_open else v <= 1.0
    if not (ok and lo_ok and hi_ok):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise EnrichError(f"{strategy}: {name}={value!r}: expected a number in {lo}0, 1{hi}")
    return v
