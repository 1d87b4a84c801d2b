"""Slow, obvious float64 references for the fast implementations."""

from __future__ import annotations

import numpy as np


def unit64(X: np.ndarray) -> np.ndarray:
    Xd = np.asarray(X, dtype=np.float64)
    return Xd / np.linalg.norm(Xd, axis=1, keepdims=True)


def greedy_reference(X: np.ndarray, initial: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ENRICH rule with a full float64 similarity matrix."""
    U = unit64(X)
    S = U @ U.T
    chosen = list(initial)
    s = S[chosen].max(axis=0)
    s[chosen] = np.inf
    picks, sims = [], []
    for _ in range(k):
        j = int(np.argmin(s))
        picks.append(j)
        sims.append(s[j])
        s = np.maximum(s, S[j])
        s[j] = np.inf
    return np.array(picks, dtype=np.int64), np.array(sims)


def assert_valid_greedy(
    X: np.ndarray, initial: np.ndarray, picks: np.ndarray, tol: float = 1e-6
) -> None:
    """Every pick's float64 max similarity to the set before it is within `tol` of the
    smallest such value among the images remaining at that step."""
    U = unit64(X)
    n = len(U)
    s = (U @ U[initial].T).max(axis=1)
    taken = np.zeros(n, dtype=bool)
    taken[initial] = True
    for step, p in enumerate(picks):
        assert not taken[p], f"step {step}: image {p} picked twice"
        true_min = s[~taken].min()
        assert s[p] <= true_min + tol, f"step {step}: picked {p} with {s[p]} > min {true_min}"
        taken[p] = True
        s = np.maximum(s, U @ U[p])
