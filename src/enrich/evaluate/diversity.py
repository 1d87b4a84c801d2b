"""How diverse is a subset? The similarity-sensitive diversity of Leinster and Cobbold.

The ENRICH authors measure the diversity of a set of images with Leinster and Cobbold's
similarity-sensitive diversity (Leinster & Cobbold, Ecology 2012; Couch, Arnaout & Arnaout,
"Diversity and redundancy in image datasets", 2024; their package ``greylock``). Each image of
the subset is its own "species" with relative abundance ``p_i = 1 / n``; the similarity
matrix is the cosine similarity of the embeddings clipped to [0, 1] (``Z_ii = 1``). With
``(Zp)_i = (1/n) Σ_j Z_ij``, the "ordinariness" of image i within the subset,

    D_q = ( Σ_i p_i (Zp)_i^(q-1) )^(1 / (1-q))       (q ≠ 1)
    D_1 = exp( -Σ_i p_i log (Zp)_i )                   (q = 1)
    D_∞ = 1 / max_i (Zp)_i

an *effective number of distinct images*: n for n mutually dissimilar images, 1 for n
copies of one image. The order q sets how much rare (dissimilar) images count; q = 1 is the
default here, as in greylock's examples. The numbers equal greylock's
``Metacommunity(counts, Z).metacommunity_diversity(viewpoint=q, measure="gamma")`` (tested
against it); this implementation sums Z in row blocks, so it never holds the n × n matrix
(greylock's in-memory path does).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["similarity_diversity", "subset_diversity"]

# Elements of one (block × n) similarity tile: 16 M float32 = 64 MB.
_TILE = 1 << 24


def similarity_diversity(X: np.ndarray, *, q: float = 1.0) -> float:
    """Leinster-Cobbold diversity of order `q` of the images whose embeddings are `X`.

    Parameters
    ----------
    X : ndarray of shape (n_images, n_dims)
        Embeddings of the subset (any scale: cosine similarity is used). A zero vector is
        similar only to itself.
    q : float
        Order (viewpoint), ``>= 0``; ``math.inf`` is allowed.

    Returns
    -------
    float
        The effective number of distinct images, between 1 and ``n_images``.

    Examples
    --------
    >>> similarity_diversity(np.eye(3))  # three unrelated images
    3.0
    >>> round(similarity_diversity(np.ones((4, 2))), 6)  # four copies of one image
    1.0
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X has shape {X.shape}; expected (n_images >= 1, n_dims)")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; expected finite embeddings")
    q = float(q)
    if not q >= 0:
        raise ValueError(f"q={q}; expected an order >= 0 (or math.inf)")
    n = X.shape[0]
    Xn = X.astype(np.float32, copy=True)
    norms = np.linalg.norm(Xn, axis=1)
    Xn[norms > 0] /= norms[norms > 0, None]
    zp = np.empty(n, dtype=np.float64)  # (n,) ordinariness of each image
    block = max(1, min(n, _TILE // n))
    for start in range(0, n, block):
        stop = min(n, start + block)
        S = np.clip(Xn[start:stop] @ Xn.T, 0.0, 1.0)  # (block, n)
        S[np.arange(stop - start), np.arange(start, stop)] = 1.0  # Z_ii = 1, zero vectors too
        zp[start:stop] = S.sum(axis=1, dtype=np.float64) / n
    if q == 1.0:
        return float(np.exp(-np.mean(np.log(zp))))
    if math.isinf(q):
        return float(1.0 / zp.max())
    return float(np.mean(zp ** (q - 1.0)) ** (1.0 / (1.0 - q)))


def subset_diversity(
    subsets: pd.DataFrame,
    embeddings: Any,
    *,
    q: float = 1.0,
    max_images: int | None = None,
) -> pd.DataFrame:
    """The diversity of every subset a benchmark selected (``subsets.parquet`` of a run).

    Parameters
    ----------
    subsets : DataFrame
        ``strategy, init, size, id`` rows, one per selected image; the ``full`` reference
        is left out.
    embeddings : enrich.embeddings.Embeddings
        The vectors the strategies saw (``vectors`` and ``index_of``).
    q : float
        Order of :func:`similarity_diversity`.
    max_images : int, optional
        Subsets larger than this are left out (n² similarities each).

    Returns
    -------
    DataFrame
        ``strategy, init, size, images, diversity``, one row per subset.
    """
    import pandas as pd

    rows = []
    chosen = subsets.loc[subsets["strategy"] != "full"]
    for key, g in chosen.groupby(["strategy", "init", "size"], sort=True):
        strategy, init, size = cast(tuple[Any, Any, Any], key)
        if max_images is not None and len(g) > max_images:
            continue
        X = embeddings.vectors[embeddings.index_of(g["id"].astype(str).to_numpy())]
        rows.append(
            {
                "strategy": str(strategy),
                "init": int(init),
                "size": int(size),
                "images": len(g),
                "diversity": similarity_diversity(X, q=q),
            }
        )
    return pd.DataFrame(rows, columns=["strategy", "init", "size", "images", "diversity"])
