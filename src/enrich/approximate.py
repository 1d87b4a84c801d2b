"""Approximate redundancy with faiss (IVF or HNSW), for archives too large for the exact pass.

The exact pass (:func:`enrich.redundancy.redundancy`) is N² work: about 30 CPU-hours at 10M
images. Here each image's nearest other image is *searched* in a faiss index instead: inner
product on L2-normalised float32 vectors (cosine), an inverted file (``"ivf"``: ``nlist``
k-means cells, ``nprobe`` of them searched per query) or a graph (``"hnsw"``: ``M`` links per
node, ``efSearch`` candidates kept while searching).

What is and is not exact
------------------------
- faiss proposes each image's partner; the reported ``max_similarity`` is then recomputed
  with the reference similarity (:func:`enrich.similarity.cosine_at`) for that pair, so every
  value is exactly the similarity of a real pair (``nearest``), and never above the exact
  maximum. Only the pair can be wrong: a better partner faiss did not visit.
- How often that happens is **measured**, not assumed: on a seeded random sample of images
  (1,000 by default) the exact maximum is computed by brute force, and the result reports
  the recall (share of the sample whose found partner attains the exact maximum, to within
  1e-7) and the mean and largest shortfall of the similarity.
- Near-duplicate groups are built from the links faiss finds (among each image's 32 nearest
  found, those at or above the threshold), each link checked on the reference similarity.
  So every link used is real: with ``"representative"`` every member is >= the threshold to
  its representative, and with ``"components"`` every group lies inside one exact group. A
  link faiss misses (or beyond an image's 32 nearest, in a large group) can leave an image
  out of its group, split a group, or (representatives are chosen greedily in index order)
  change which image represents it; there may therefore be more, smaller groups than the
  exact pass finds. Memory for links is at most N x 32 pairs.
- faiss's k-means and graph construction round differently on different CPUs and thread
  counts, so the pair found (not its value) can differ between machines.

Defaults are chosen for N up to 10M: ``nlist = 4·sqrt(N)`` (at most N/39, so that k-means has
39 training points per cell), trained on at most 64 points per cell, ``nprobe = 32``; HNSW
with ``M = 32``, ``efConstruction = 80``, ``efSearch = 128``.

The Dask engine (:func:`enrich.distributed.approximate.redundancy`) builds the index once
on one worker and has every worker search its own rows against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError, MissingExtraError
from enrich.redundancy import RedundancyResult, _check_options, _labels, _union
from enrich.similarity import cosine_at, float32_error, normalize_rows, row_sqnorms

__all__ = ["METHODS", "ApproxOptions", "redundancy"]

#: Approximate indexes, the first is the default.
METHODS = ("ivf", "hnsw")
#: Partners asked of faiss per image (the image itself is usually one of them).
K = 4
#: Near-duplicate links are looked for among each image's this many nearest found (bounds
#: the links kept: at most N x LINK_K pairs).
LINK_K = 32
#: A found similarity this close to the exact maximum counts as attaining it.
RECALL_TOLERANCE = 1e-7


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingExtraError("faiss", "faiss") from None
    return faiss


def _whole(name: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise EnrichError(f"{name}={value!r}: expected a whole number >= {low}")


@dataclass(frozen=True)
class ApproxOptions:
    """How the approximate search runs (see the module docstring for the defaults).

    Attributes
    ----------
    method : {"ivf", "hnsw"}
    nlist : int, optional
        IVF cells; None: ``4·sqrt(N)``, at most N/39.
    nprobe : int
        IVF cells searched per query (more: higher recall, slower).
    m : int
        HNSW links per node.
    ef_construction, ef_search : int
        HNSW candidate lists while building and while searching.
    recall_sample : int
        Images whose exact maximum is computed by brute force to measure the recall (0: none).
    seed : int
        Draws the k-means training sample, the k-means start and the recall sample.
    """

    method: str = "ivf"
    nlist: int | None = None
    nprobe: int = 32
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    recall_sample: int = 1000
    seed: int = 0

    def check(self) -> None:
        if self.method not in METHODS:
            raise EnrichError(
                f"approximate method {self.method!r}: expected one of {', '.join(METHODS)}"
            )
        if self.nlist is not None:
            _whole("nlist", self.nlist)
        _whole("nprobe", self.nprobe)
        _whole("m", self.m, 2)
        _whole("ef_construction", self.ef_construction)
        _whole("ef_search", self.ef_search)
        _whole("recall_sample", self.recall_sample, 0)
        _whole("seed", self.seed, 0)

    def resolved(self, n: int) -> dict[str, Any]:
        """The parameters used for N images, as recorded in ``summary.json``."""
        if self.method == "hnsw":
            return {
                "method": "hnsw",
                "m": self.m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
            }
        nlist = self.nlist or max(1, min(round(4 * math.sqrt(n)), n // 39))
        nlist = min(nlist, n)
        return {
            "method": "ivf",
            "nlist": nlist,
            "nprobe": min(self.nprobe, nlist),
            "train_size": min(n, 64 * nlist),
        }


# --------------------------------------------------------------------------- the index
def training_rows(n: int, params: dict[str, Any], seed: int) -> np.ndarray:
    """Sorted row positions of the k-means training sample (all rows for HNSW: none)."""
    if params["method"] != "ivf":
        return np.empty(0, dtype=np.int64)
    size = int(params["train_size"])
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)) if size < n else np.arange(n)


def new_index(d: int, params: dict[str, Any], seed: int) -> Any:
    """An empty faiss index on inner product (trained next for IVF)."""
    faiss = _faiss()
    if params["method"] == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(params["m"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params["ef_construction"])
        index.hnsw.efSearch = int(params["ef_search"])
        return index
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, int(params["nlist"]), faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed)
    index.cp.max_points_per_centroid = 64
    index.nprobe = int(params["nprobe"])
    return index


def prepare_for_search(index: Any, params: dict[str, Any]) -> Any:
    """Search settings and, for IVF, the id -> vector map (to read back partners' rows)."""
    faiss = _faiss()
    if params["method"] == "hnsw":
        index.hnsw.efSearch = int(params["ef_search"])
    else:
        index.nprobe = int(params["nprobe"])
        if index.direct_map.type == faiss.DirectMap.NoMap:
            index.make_direct_map()
    return index


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def _cosines(
    Q: np.ndarray, qsq: np.ndarray, rows: np.ndarray, P: np.ndarray, psq: np.ndarray
) -> np.ndarray:  # pragma: no cover - jitted
    """Reference similarity of ``Q[rows[t]]`` and ``P[t]`` for every t."""
    out = np.empty(rows.shape[0])
    for t in range(rows.shape[0]):
        out[t] = cosine_at(Q, qsq, rows[t], P, psq, t)
    return out


@numba.njit(cache=True, nogil=True)
def _exact_block(
    Q: np.ndarray,
    qsq: np.ndarray,
    qrows: np.ndarray,
    B: np.ndarray,
    bsq: np.ndarray,
    j0: int,
    T: np.ndarray,
    err: float,
    best: np.ndarray,
    near: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Fold one float32 block ``T = Q @ B.T`` into each query's exact best partner: only the
    entries within the float32 error of what could still win are recomputed (reference)."""
    m, b = T.shape
    for r in range(m):
        rmax = -np.inf
        for j in range(b):
            if j0 + j != qrows[r] and T[r, j] > rmax:
                rmax = T[r, j]
        lo = max(best[r] - err, rmax - 2.0 * err)
        for j in range(b):
            gj = j0 + j
            if gj != qrows[r] and T[r, j] >= lo:
                v = cosine_at(Q, qsq, r, B, bsq, j)
                if v > best[r] or (v == best[r] and gj < near[r]):
                    best[r] = v
                    near[r] = gj


# --------------------------------------------------------------------------- steps
def search_rows(
    index: Any, Q: np.ndarray, q0: int, *, threshold: float, links: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Search unit rows ``Q`` (global rows ``q0 ..``) in `index`.

    faiss's float32 values only choose what to look at: each row's partner is the best, on
    the reference similarity, of the candidates within twice the float32 error of the best
    faiss value, and a link is kept when its faiss value clears the threshold by more than
    the float32 error or its reference similarity reaches it. Only those candidates' rows are
    read back from the index.

    Returns
    -------
    best : ndarray of shape (m,), float64
        Reference similarity of each row's found partner (-inf: none found).
    near : ndarray of shape (m,), int64
        Its row (-1: none found).
    links : ndarray of shape (n_links, 2), int64
        Pairs (i < j) at or above `threshold` on the reference similarity among each row's
        :data:`LINK_K` nearest found (only when `links`).
    """
    m, d = Q.shape
    err = float32_error(d)
    D, found = index.search(Q, LINK_K if links else K)  # (m, k)
    I = np.asarray(found, dtype=np.int64)  # noqa: E741 - faiss's name
    D = np.asarray(D, dtype=np.float64)
    rows = q0 + np.arange(m)
    D[(I < 0) | (I == rows[:, None])] = -np.inf  # no result, or the row itself
    top = D.max(axis=1)
    cand = D >= (top - 2.0 * err)[:, None]
    cand &= np.isfinite(D)
    edge = (D >= threshold - err) & (D < threshold + err) if links else np.zeros_like(cand)
    rr, cc = np.nonzero(cand | edge)
    J = I[rr, cc]
    P = np.ascontiguousarray(index.reconstruct_batch(J), dtype=np.float32).reshape(-1, d)
    values = _cosines(Q, row_sqnorms(Q), rr, P, row_sqnorms(P))  # reference similarities
    best = np.full(m, -np.inf)
    near = np.full(m, -1, dtype=np.int64)
    is_cand = cand[rr, cc]
    # per row: highest reference similarity, then lowest index
    order = np.lexsort((J[is_cand], -values[is_cand], rr[is_cand]))
    r_c, j_c, v_c = rr[is_cand][order], J[is_cand][order], values[is_cand][order]
    first = np.r_[True, r_c[1:] != r_c[:-1]] if len(r_c) else np.zeros(0, bool)
    best[r_c[first]] = v_c[first]
    near[r_c[first]] = j_c[first]
    found_links = np.empty((0, 2), dtype=np.int64)
    if links:
        sure = np.nonzero(D >= threshold + err)
        checked = edge[rr, cc] & (values >= threshold)
        i_all = np.concatenate([rows[sure[0]], rows[rr[checked]]])
        j_all = np.concatenate([I[sure], J[checked]])
        found_links = np.stack([np.minimum(i_all, j_all), np.maximum(i_all, j_all)], axis=1)
    return best, near, found_links


def exact_rows(
    Q: np.ndarray, qrows: np.ndarray, blocks: Callable[[], Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact best partner (reference similarity, lowest index on ties) of the unit rows ``Q``
    (global rows `qrows`), by brute force over ``blocks()``: ``(j0, B)`` unit-row blocks
    covering every row once."""
    qsq = row_sqnorms(Q)
    err = float32_error(Q.shape[1])
    best = np.full(len(Q), -np.inf)
    near = np.full(len(Q), -1, dtype=np.int64)
    qrows = np.asarray(qrows, dtype=np.int64)
    for j0, B in blocks():
        T = Q @ B.T  # (m, b) float32
        _exact_block(Q, qsq, qrows, B, row_sqnorms(B), int(j0), T, err, best, near)
    return best, near


def recall_rows(n: int, sample: int, seed: int) -> np.ndarray:
    """The seeded sample of rows whose exact maximum is checked (sorted)."""
    rng = np.random.default_rng([int(seed), 1])  # independent of the k-means sample
    size = min(int(sample), n)
    return np.sort(rng.choice(n, size=size, replace=False)) if size < n else np.arange(n)


def recall_report(found: np.ndarray, exact: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """Recall of the true maximum and the shortfall, from the sample's found and exact values."""
    found = np.asarray(found, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    if len(exact) == 0:
        return {"sample": 0, "recall": None, "mean_shortfall": None, "max_shortfall": None}
    short = np.maximum(exact - found, 0.0)
    return {
        "sample": len(exact),
        "recall": float((short <= RECALL_TOLERANCE).mean()),
        "mean_shortfall": float(short.mean()),
        "max_shortfall": float(short.max()),
        "tolerance": RECALL_TOLERANCE,
        "seed": params.get("seed"),
    }


def finish(
    n: int,
    best: np.ndarray,
    near: np.ndarray,
    links: np.ndarray,
    *,
    group_threshold: float,
    group_method: str,
    info: dict[str, Any],
) -> RedundancyResult:
    """Groups from the verified links; the result."""
    if group_method == "components":
        parent = np.arange(n, dtype=np.int64)
        _unions(parent, links)
        group = _labels(parent)
    else:
        group = representatives(n, links)
    return RedundancyResult(
        max_similarity=np.clip(best, -1.0, 1.0).astype(np.float32),
        nearest=near,
        group=group,
        group_threshold=float(group_threshold),
        info=info,
        group_method=group_method,
    )


@numba.njit(cache=True)
def _unions(parent: np.ndarray, links: np.ndarray) -> None:  # pragma: no cover - jitted
    for k in range(links.shape[0]):
        _union(parent, links[k, 0], links[k, 1])


@numba.njit(cache=True)
def _greedy(n: int, links: np.ndarray, starts: np.ndarray) -> np.ndarray:  # pragma: no cover
    rep = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if rep[i] == -1:
            rep[i] = i
        if rep[i] != i:
            continue
        for k in range(starts[i], starts[i + 1]):
            j = links[k, 1]
            if rep[j] == -1:
                rep[j] = i
    return rep


def representatives(n: int, links: np.ndarray) -> np.ndarray:
    """Greedy representatives in index order over verified links (pairs i < j): the lowest
    image not yet covered represents every later image it links to that is not yet covered."""
    links = np.unique(np.asarray(links, dtype=np.int64).reshape(-1, 2), axis=0)  # sorted
    starts = (
        np.searchsorted(links[:, 0], np.arange(n + 1)) if len(links) else np.zeros(n + 1, np.int64)
    )
    return _greedy(n, np.ascontiguousarray(links), starts.astype(np.int64))


# --------------------------------------------------------------------------- public API
def redundancy(
    X: Any,
    *,
    options: ApproxOptions | None = None,
    group_threshold: float = 0.95,
    group_method: str = "representative",
    block: int = 65536,
    progress: Callable[[int], None] | None = None,
) -> RedundancyResult:
    """Each image's (approximate) nearest other image and its exact similarity, with faiss.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims)
        Embeddings; finite, non-zero rows, N >= 2.
    options : ApproxOptions, optional
        Index and search settings (default IVF with the defaults above).
    group_threshold, group_method
        As :func:`enrich.redundancy.redundancy` (groups from the links faiss finds).
    block : int
        Rows searched per batch (memory).
    progress : callable, optional
        Called with the number of rows searched, as batches finish.

    Returns
    -------
    RedundancyResult
        ``info["approximate"]`` records the index parameters and the measured recall
        (``info["approximate"]["recall"]``).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(500, 8))
    >>> r = redundancy(X, options=ApproxOptions(nlist=4, nprobe=4))
    >>> r.info["approximate"]["recall"]["recall"]  # every cell searched: exact
    1.0
    """
    opts = options or ApproxOptions()
    opts.check()
    _check_options(group_threshold, group_method, 1)
    _whole("block", block)
    _faiss()  # a missing faiss fails before any work
    Xn = normalize_rows(check_vectors(X))
    n, d = Xn.shape
    params = opts.resolved(n)
    index = new_index(d, params, opts.seed)
    if params["method"] == "ivf":
        index.train(Xn[training_rows(n, params, opts.seed)])
    index.add(Xn)
    prepare_for_search(index, params)
    best = np.empty(n)
    near = np.empty(n, dtype=np.int64)
    links = []
    for a in range(0, n, block):
        b = min(n, a + block)
        best[a:b], near[a:b], lk = search_rows(
            index, Xn[a:b], a, threshold=float(group_threshold), links=True
        )
        links.append(lk)
        if progress is not None:
            progress(b - a)
    del index
    # An image whose probed cells held nothing but itself: its partner by brute force.
    lost = np.flatnonzero(near < 0)
    if len(lost):
        best[lost], near[lost] = exact_rows(Xn[lost], lost, lambda: _blocks(Xn))
    sample = recall_rows(n, opts.recall_sample, opts.seed)
    exact, _ = exact_rows(Xn[sample], sample, lambda: _blocks(Xn))
    params = {**params, "seed": opts.seed, "n_no_partner_found": len(lost)}
    params["recall"] = recall_report(best[sample], exact, params)
    return finish(
        n,
        best,
        near,
        np.concatenate(links),
        group_threshold=group_threshold,
        group_method=group_method,
        info={"approximate": params},
    )


def _blocks(Xn: np.ndarray, block: int = 16384) -> Any:
    for j0 in range(0, len(Xn), block):
        yield j0, Xn[j0 : j0 + block]


def describe(info: dict[str, Any]) -> str:
    """One line on the approximation and its measured recall, for the CLI."""
    a = info["approximate"]
    r = a["recall"]
    how = (
        f"IVF nlist={a['nlist']}, nprobe={a['nprobe']}"
        if a["method"] == "ivf"
        else f"HNSW M={a['m']}, efSearch={a['ef_search']}"
    )
    if not r["sample"]:
        return f"APPROXIMATE ({how}); recall not measured (--recall-sample 0)"
    return (
        f"APPROXIMATE ({how}): the found partner attains the exact maximum for "
        f"{r['recall']:.1%} of {r['sample']:,} sampled images (mean shortfall "
        f"{r['mean_shortfall']:.2g}, largest {r['max_shortfall']:.2g})"
    )
