"""When to stop labeling: read it off the ENRICH curve.

Greedy max-min picks, at each step, the remaining image with the lowest max similarity to the
chosen set, so ``max_similarity_at_pick`` never decreases (up to float rounding), and once a
pick is above ``T`` *every* remaining image has a chosen neighbour above ``T``. The number of
images to label before that happens is the rank of the first pick above ``T``.

Examples
--------
>>> import numpy as np
>>> s = np.array([np.nan, 0.2, 0.5, 0.8, 0.91, 0.93, 0.96, 0.97])
>>> images_to_reach(s, thresholds=(0.9, 0.95))
{'0.9': 4, '0.95': 6}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.errors import EnrichError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["elbow", "images_to_reach", "plot_stopping_curve", "stopping_summary"]

THRESHOLDS = (0.9, 0.95)


def images_to_reach(
    max_similarity: np.ndarray, *, thresholds: Sequence[float] = THRESHOLDS
) -> dict[str, int | None]:
    """For each T, how many images (from rank 0, seed set included) to label before every
    remaining image has a labeled neighbour with similarity above T; None when the ranked
    prefix never gets there (a budget too small, or a dataset with no such redundancy).

    Parameters
    ----------
    max_similarity : ndarray of shape (n_ranked,)
        ``max_similarity_at_pick`` in rank order (NaN for the seed set).
    """
    s = np.asarray(max_similarity, dtype=float)
    out: dict[str, int | None] = {}
    for t in thresholds:
        above = np.flatnonzero(np.nan_to_num(s, nan=-np.inf) > t)
        out[f"{t:g}"] = int(above[0]) if above.size else None
    return out


def elbow(max_similarity: np.ndarray) -> int | None:
    """The rank where the curve bends most (Kneedle, Satopää et al. 2011): the point farthest
    above the chord from the first to the last pick, on axes scaled to [0, 1]. None for fewer
    than 3 picks or a flat curve."""
    s = np.asarray(max_similarity, dtype=float)
    ranks = np.flatnonzero(~np.isnan(s))
    if ranks.size < 3:
        return None
    y = s[ranks]
    span = y[-1] - y[0]
    if not span > 0:
        return None
    xn = (ranks - ranks[0]) / (ranks[-1] - ranks[0])
    yn = (y - y[0]) / span
    k = int(np.argmax(yn - xn))
    return int(ranks[k]) if yn[k] - xn[k] > 0 else None


def stopping_summary(
    max_similarity: np.ndarray, *, thresholds: Sequence[float] = THRESHOLDS
) -> dict[str, Any]:
    """``images_to_reach`` and ``elbow_rank`` together (what ``order.json`` records)."""
    return {
        "images_to_reach_similarity": images_to_reach(max_similarity, thresholds=thresholds),
        "elbow_rank": elbow(max_similarity),
    }


def plot_stopping_curve(
    max_similarity: np.ndarray,
    ax: Axes | None = None,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
) -> Figure:
    """Max similarity at pick vs images labeled, the elbow and the thresholds marked."""
    from matplotlib.figure import Figure

    s = np.asarray(max_similarity, dtype=float)
    if s.ndim != 1 or not np.isfinite(s).any():
        raise EnrichError("the order has no max_similarity_at_pick to plot (seed set only?)")
    if ax is None:
        fig = Figure(figsize=(6.0, 3.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure  # type: ignore[assignment]
    x = np.arange(len(s))
    ax.plot(x, s, color="#1f77b4", lw=1.5, label="max similarity at pick")
    reach = images_to_reach(s, thresholds=thresholds)
    for t, color in zip(thresholds, ("#ff7f0e", "#d62728", "#9467bd"), strict=False):
        ax.axhline(t, color=color, lw=0.8, ls="--")
        n = reach[f"{t:g}"]
        if n is not None:
            ax.axvline(n, color=color, lw=0.8, ls=":")
            ax.annotate(
                f"T={t:g}: {n:,} images",
                (n, t),
                xytext=(4, -12),
                textcoords="offset points",
                fontsize=8,
                color=color,
            )
    k = elbow(s)
    if k is not None:
        ax.plot([k], [s[k]], "o", color="black", ms=6, label=f"elbow: {k:,} images")
    ax.set_xlabel("images labeled (rank)")
    ax.set_ylabel("max cosine similarity to the labeled set")
    ax.set_title("When to stop: new images stop adding anything new")
    ax.legend(loc="lower right", fontsize=8)
    return fig
