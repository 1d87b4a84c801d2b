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


# ------------------------------------------------------------------ label-free strategies
def knn_reference(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k most similar other rows by float64 cosine (similarity desc, index asc)."""
    U = unit64(X)
    S = U @ U.T
    n = len(U)
    nb = np.empty((n, k), dtype=np.int64)
    sv = np.empty((n, k))
    for i in range(n):
        cand = sorted((j for j in range(n) if j != i), key=lambda j: (-S[i, j], j))[:k]
        nb[i] = cand
        sv[i] = S[i, cand]
    return nb, sv


def typicality_reference(X: np.ndarray, k: int) -> np.ndarray:
    """1 / (mean Euclidean distance of each unit row to its k nearest others + 1e-5)."""
    U = unit64(X)
    D = np.sqrt(np.maximum(((U[:, None, :] - U[None, :, :]) ** 2).sum(-1), 0.0))
    np.fill_diagonal(D, np.inf)
    return 1.0 / (np.sort(D, axis=1)[:, :k].mean(axis=1) + 1e-5)


def assert_valid_typiclust(
    X: np.ndarray,
    initial: np.ndarray,
    picks: np.ndarray,
    cluster,  # K -> labels
    *,
    k: int = 20,
    growth: float = 2.0,
    max_clusters: int = 500,
    min_cluster_size: int = 5,
    tol: float = 1e-6,
) -> None:
    """Walk the documented rounds: each pick lies in the cluster the rule names (fewest
    chosen, then largest, then lowest id; clusters of <= min_cluster_size last) and is, within
    `tol` (relative), the most typical unchosen member of it."""
    import math

    typ = typicality_reference(X, k)
    n = len(X)
    chosen = set(int(i) for i in initial)
    t = 0
    while t < len(picks):
        b = min(max(1, math.ceil((growth - 1.0) * len(chosen))), len(picks) - t)
        K = min(len(chosen) + b, max_clusters, n)
        labels = np.asarray(cluster(K))
        for _ in range(b):
            best = None
            for c in range(K):
                members = [i for i in range(n) if labels[i] == c]
                free = [i for i in members if i not in chosen]
                if not free:
                    continue
                key = (
                    len(members) <= min_cluster_size,
                    len(members) - len(free),
                    -len(members),
                    c,
                )
                if best is None or key < best[0]:
                    best = (key, free)
            assert best is not None
            p = int(picks[t])
            assert p in best[1], f"pick {t}: {p} is not in the cluster the rule names"
            top = max(typ[i] for i in best[1])
            assert typ[p] >= top * (1 - tol), f"pick {t}: {p} is not the most typical"
            chosen.add(p)
            t += 1


def purity_delta_reference(X: np.ndarray, labels: np.ndarray, purity: float) -> float:
    """The largest δ among all pairwise distances whose share of pure balls
    (no other-label image at distance < δ) is at least `purity` (brute force)."""
    U = unit64(X)
    D = np.sqrt(np.maximum(2.0 - 2.0 * (U @ U.T), 0.0))
    best = 0.0
    for delta in np.unique(D):
        pure = [
            not any(labels[j] != labels[i] and D[i, j] < delta for j in range(len(U)))
            for i in range(len(U))
        ]
        if np.mean(pure) >= purity:
            best = max(best, float(delta))
    return best


def probcover_reference(
    X: np.ndarray, delta: float, initial: np.ndarray, n_picks: int, max_rounds: int = 32
) -> list[int]:
    """The documented ProbCover order with exact δ-balls from a dense distance matrix, sets
    and plain loops: greedy max coverage (>= 2 new images) at δ, δ/2, ...; then the rest by
    ball size at δ."""
    U = unit64(X)
    D = np.sqrt(np.maximum(2.0 - 2.0 * (U @ U.T), 0.0))
    n = len(U)
    chosen = [int(i) for i in initial]
    picks: list[int] = []
    d = delta
    rounds = 0
    while len(picks) < n_picks and d > 0 and rounds < max_rounds:
        balls = [{i} | {j for j in range(n) if j != i and D[i, j] < d} for i in range(n)]
        if all(len(balls[i]) <= 1 for i in range(n) if i not in chosen):
            break
        covered = set().union(*(balls[c] for c in chosen))
        while len(picks) < n_picks:
            gains = [(len(balls[i] - covered), -i) for i in range(n) if i not in chosen]
            g, neg_i = max(gains)
            if g < 2:
                break
            chosen.append(-neg_i)
            picks.append(-neg_i)
            covered |= balls[-neg_i]
        rounds += 1
        d /= 2
    size0 = [sum(1 for j in range(n) if j != i and D[i, j] < delta) for i in range(n)]
    rest = sorted((i for i in range(n) if i not in chosen), key=lambda i: (-size0[i], i))
    return picks + rest[: n_picks - len(picks)]


def facility_matrix_reference(X: np.ndarray, k: int) -> np.ndarray:
    """Dense w(i, j): cosine clipped at 0 on k-NN edges in either direction, 1 on the
    diagonal, 0 elsewhere (float64)."""
    nb, sv = knn_reference(X, k)
    n = len(X)
    W = np.zeros((n, n))
    for i in range(n):
        for j, s in zip(nb[i], sv[i], strict=True):
            W[i, j] = W[j, i] = max(W[i, j], max(s, 0.0))
    np.fill_diagonal(W, 1.0)
    return W


def assert_valid_facility(
    W: np.ndarray, initial: np.ndarray, picks: np.ndarray, tol: float = 1e-6
) -> None:
    """Every pick's facility-location gain (float64, dense) is within `tol` of the best
    gain among the images not chosen before it."""
    cur = W[:, list(initial)].max(axis=1)
    taken = np.zeros(len(W), dtype=bool)
    taken[initial] = True
    for step, p in enumerate(picks):
        assert not taken[p], f"step {step}: image {p} picked twice"
        gains = np.maximum(W - cur[:, None], 0.0).sum(axis=0)
        best = gains[~taken].max()
        assert gains[p] >= best - tol, f"step {step}: gain {gains[p]} < best {best}"
        taken[p] = True
        cur = np.maximum(cur, W[:, p])
