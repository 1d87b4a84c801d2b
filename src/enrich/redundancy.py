"""How redundant is a dataset? Each image's highest similarity to any *other* image.

This is the paper's Fig. 1: "for each dataset we identified the maximum pairwise
similarity for each image", shown as a cumulative distribution. The computation is exact
and blocked: symmetric float32 GEMM tiles of ``block x block``, reduced on the fly, so
memory stays O(N·d + block²) and no N x N matrix ever exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError
from enrich.similarity import normalize_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["RedundancyResult", "near_duplicate_groups", "plot_cdf", "redundancy"]

THRESHOLDS = (0.8, 0.9, 0.95)
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass(frozen=True)
class RedundancyResult:
    """Per-image redundancy.

    Attributes
    ----------
    max_similarity : ndarray of shape (n_images,), float32
        Highest cosine similarity to any other image (self excluded).
    nearest : ndarray of shape (n_images,), int64
        Index of that most similar image (lowest index on ties).
    group : ndarray of shape (n_images,), int64
        Near-duplicate group label at `group_threshold` (connected components of the graph
        with an edge wherever similarity >= threshold); singletons have their own label.
    group_threshold : float
    """

    max_similarity: np.ndarray
    nearest: np.ndarray
    group: np.ndarray
    group_threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Quantiles and the paper's Fig. 1 statements (fractions above 0.8/0.9/0.95, below 0.4).

        >>> r = redundancy(np.array([[1.0, 0], [1, 0.01], [0, 1]]))
        >>> r.summary()["fraction_above"]["0.9"]
        0.6666666666666666
        """
        m = self.max_similarity.astype(np.float64)
        groups = self.groups()
        return {
            "n_images": len(m),
            "mean": float(m.mean()),
            "quantiles": {f"{q:g}": float(np.quantile(m, q)) for q in QUANTILES},
            "fraction_above": {f"{t:g}": float((m > t).mean()) for t in THRESHOLDS},
            "fraction_below": {"0.4": float((m < 0.4).mean())},
            "near_duplicates": {
                "threshold": self.group_threshold,
                "n_groups": len(groups),
                "n_images_in_groups": int(sum(len(g) for g in groups)),
                "largest_group": int(max((len(g) for g in groups), default=0)),
            },
        }

    def groups(self, min_size: int = 2) -> list[np.ndarray]:
        """Near-duplicate groups with at least `min_size` images, largest first.

        Each group is an int64 array of indices, sorted.
        """
        order = np.argsort(self.group, kind="stable")
        labels = self.group[order]
        cuts = np.flatnonzero(np.diff(labels)) + 1
        out = [g for g in np.split(order, cuts) if len(g) >= min_size]
        out.sort(key=lambda g: (-len(g), int(g[0])))
        return [np.sort(g) for g in out]


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, i: int) -> int:  # pragma: no cover - jitted
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True, nogil=True)
def _union_pairs(
    parent: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> None:  # pragma: no cover
    for k in range(rows.shape[0]):
        ri = _find(parent, rows[k])
        rj = _find(parent, cols[k])
        if ri != rj:
            if ri < rj:
                parent[rj] = ri
            else:
                parent[ri] = rj


def _keep_max(
    run_best: np.ndarray, run_block: np.ndarray, sl: slice, tile_max: np.ndarray, block_id: int
) -> None:
    """Running max per image over tiles, remembering which block of partners gave it.
    Strict '>' keeps the earliest (lowest-index) block on ties."""
    better = tile_max > run_best[sl]
    run_best[sl][better] = tile_max[better]
    run_block[sl][better] = block_id


def _nearest_in_blocks(
    Xn: np.ndarray, best_block: np.ndarray, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact argmax (lowest index on ties) for each image, searching only the block of
    partners that holds its maximum: one small GEMM per block instead of an argmax per tile."""
    n = len(Xn)
    value = np.empty(n, dtype=np.float32)
    nearest = np.empty(n, dtype=np.int64)
    order = np.argsort(best_block, kind="stable")
    cuts = np.flatnonzero(np.diff(best_block[order])) + 1
    for imgs in np.split(order, cuts):
        j0 = int(best_block[imgs[0]]) * block
        S = Xn[imgs] @ Xn[j0 : j0 + block].T  # (m, b)
        self_in = (imgs >= j0) & (imgs < j0 + block)
        S[np.flatnonzero(self_in), imgs[self_in] - j0] = -np.inf
        k = S.argmax(axis=1)
        nearest[imgs] = k + j0
        value[imgs] = S[np.arange(len(imgs)), k]
    return value, nearest


@numba.njit(cache=True)
def _labels(parent: np.ndarray) -> np.ndarray:  # pragma: no cover - jitted
    out = np.empty(parent.shape[0], dtype=np.int64)
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)
    return out


# --------------------------------------------------------------------------- public API
def redundancy(
    X: Any,
    *,
    group_threshold: float = 0.95,
    block: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> RedundancyResult:
    """Each image's maximum cosine similarity to any other image, exactly.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims)
        Embeddings; finite, non-zero rows, N >= 2.
    group_threshold : float
        Similarity at or above which two images are near-duplicates (for `groups`).
    block : int
        Tile size; memory is O(N·d + block²).
    progress : callable, optional
        Called with the number of tiles done, as they finish.

    Returns
    -------
    RedundancyResult

    Examples
    --------
    >>> r = redundancy(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]))
    >>> r.max_similarity.round(2).tolist(), r.nearest.tolist()
    ([0.8, 0.8, 0.6], [1, 0, 1])
    """
    if not -1.0 <= float(group_threshold) <= 1.0:
        raise EnrichError(f"group_threshold={group_threshold}: expected a similarity in [-1, 1]")
    Xn = normalize_rows(check_vectors(X))
    n = len(Xn)
    # Row direction (partners j >= i) and column direction (partners j < i) are kept apart so
    # that, on equal values, the lower-indexed partner block (the column side) wins.
    row_best = np.full(n, -np.inf, dtype=np.float32)
    row_block = np.zeros(n, dtype=np.int64)
    col_best = np.full(n, -np.inf, dtype=np.float32)
    col_block = np.zeros(n, dtype=np.int64)
    parent = np.arange(n, dtype=np.int64)
    thr = np.float32(group_threshold)
    rmax = np.empty(block, dtype=np.float32)
    cmax = np.empty(block, dtype=np.float32)
    C = np.empty((block, block), dtype=np.float32)
    for i0 in range(0, n, block):
        Xi = Xn[i0 : i0 + block]
        rows = slice(i0, i0 + len(Xi))
        for j0 in range(i0, n, block):
            Xj = Xn[j0 : j0 + block]
            T = C[: len(Xi), : len(Xj)]
            np.matmul(Xi, Xj.T, out=T)  # (a, b) float32 tile, reused buffer
            if i0 == j0:
                np.fill_diagonal(T, -np.inf)  # self excluded
            rm = T.max(axis=1, out=rmax[: len(Xi)])
            _keep_max(row_best, row_block, rows, rm, j0 // block)
            if i0 != j0:  # the same tile seen from the partners' side
                cm = T.max(axis=0, out=cmax[: len(Xj)])
                _keep_max(col_best, col_block, slice(j0, j0 + len(Xj)), cm, i0 // block)
            hot = np.flatnonzero(rm >= thr)
            if hot.size:
                r, c = np.nonzero(T[hot] >= thr)
                _union_pairs(parent, hot[r] + i0, c + j0)
            if progress is not None:
                progress(1)
    from_cols = col_best >= row_best
    best_block = np.where(from_cols, col_block, row_block)
    best, arg = _nearest_in_blocks(Xn, best_block, block)
    return RedundancyResult(
        max_similarity=np.minimum(best, np.float32(1.0)),
        nearest=arg,
        group=_labels(parent),
        group_threshold=float(group_threshold),
        info={"block": block},
    )


def near_duplicate_groups(X: Any, threshold: float = 0.95, min_size: int = 2) -> list[np.ndarray]:
    """Groups of images linked by similarity >= `threshold` (connected components).

    >>> near_duplicate_groups(np.array([[1.0, 0], [1, 0.01], [0, 1]]), 0.99)
    [array([0, 1])]
    """
    return redundancy(X, group_threshold=threshold).groups(min_size)


def plot_cdf(
    datasets: Mapping[str, np.ndarray | RedundancyResult],
    ax: Axes | None = None,
    *,
    title: str = "How redundant is each dataset?",
) -> Figure:
    """The paper's Fig. 1: the CDF of each image's max similarity, several datasets overlaid.

    Parameters
    ----------
    datasets : mapping of name -> max similarities (ndarray (N,)) or RedundancyResult
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    else:
        fig = ax.figure  # type: ignore[assignment]
    for name, values in datasets.items():
        m = values.max_similarity if isinstance(values, RedundancyResult) else np.asarray(values)
        xs = np.sort(m.astype(np.float64))
        ys = np.arange(1, len(xs) + 1) / len(xs)
        ax.step(xs, ys, where="post", label=f"{name} (N={len(xs):,})")
    for t in (0.8, 0.9):
        ax.axvline(t, color="0.8", lw=0.8, ls="--", zorder=0)
    ax.set_xlabel("max similarity to any other image")
    ax.set_ylabel("cumulative fraction of images")
    ax.set_ylim(0, 1.0)
    ax.set_title(title)
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
