"""Model metrics: ROC AUC (binary and one-vs-rest macro) and mean Jaccard over foreground.

AUC uses the Mann-Whitney relation ``AUC = (R₁ − n₁(n₁+1)/2) / (n₁ n₀)`` with mid-ranks for
ties (``scipy.stats.rankdata``), which equals the trapezoidal area under the ROC curve; no
scikit-learn needed.

Examples
--------
>>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
0.75
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from enrich.errors import EnrichError

__all__ = ["auc", "jaccard_counts", "macro_auc", "mean_jaccard"]


def auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC.

    Parameters
    ----------
    y_true : ndarray of shape (n,)
        0/1 (or bool) labels; 1 is the positive class.
    scores : ndarray of shape (n,)
        Higher means more likely positive.

    Raises
    ------
    EnrichError
        When one class is absent (AUC is undefined) or scores are not finite.
    """
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise EnrichError(f"labels {y.shape} and scores {s.shape} differ in shape")
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise EnrichError(
            f"AUC is undefined with {n1} positive(s) and {n0} negative(s); need both classes"
        )
    if not np.isfinite(s).all():
        raise EnrichError("scores contain NaN or inf")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def macro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """AUC for 2 classes (column 1 vs rest), one-vs-rest macro average for more.

    Parameters
    ----------
    y_true : ndarray of shape (n,)
        Class indices ``0..n_classes-1``.
    proba : ndarray of shape (n, n_classes)
        Scores per class (e.g. softmax probabilities).
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise EnrichError(f"scores of shape {p.shape} do not match {len(y)} labels")
    if p.shape[1] == 2:
        return auc(y == 1, p[:, 1])
    return float(np.mean([auc(y == k, p[:, k]) for k in range(p.shape[1])]))


def jaccard_counts(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class intersection and union pixel counts, to accumulate over batches.

    Parameters
    ----------
    pred, target : ndarray of shape (n, H, W) of int
        Predicted and true class per pixel.

    Returns
    -------
    ndarray of shape (n_classes, 2)
        ``[:, 0]`` intersections, ``[:, 1]`` unions.
    """
    p = np.asarray(pred).ravel().astype(np.int64)
    t = np.asarray(target).ravel().astype(np.int64)
    k = n_classes
    conf = np.bincount(t * k + p, minlength=k * k).reshape(k, k)  # (true, pred)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    return np.stack([inter, union], axis=1)


def mean_jaccard(counts: np.ndarray) -> float:
    """Mean Jaccard (IoU) over the foreground classes ``1..K-1`` from accumulated counts.

    Each class's IoU pools its pixels over the whole test set; classes that never occur in
    either prediction or truth are left out of the mean (an all-empty class has no IoU).

    >>> c = jaccard_counts(np.array([[0, 1, 1]]), np.array([[0, 1, 0]]), 2)
    >>> mean_jaccard(c)
    0.5
    """
    c = np.asarray(counts, dtype=np.float64)[1:]
    present = c[:, 1] > 0
    if not present.any():
        return float("nan")
    return float(np.mean(c[present, 0] / c[present, 1]))
