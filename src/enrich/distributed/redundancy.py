"""Exact redundancy on Dask: tiles of the all-pairs product mapped over workers, reduced.

The in-process engine (:func:`enrich.redundancy.redundancy`) walks the upper triangle of
``block x block`` similarity tiles and folds each one into every image's best partner
(reference similarity, lowest index on ties) and, for ``"components"``, a near-duplicate
union-find forest; threads each take tiles as they come free and their partial results merge
exactly. Here the same tiles, the same per-tile kernel (``_Partial.tile``) and the same exact
merge (``_merge``) run as Dask tasks: each task folds its share of tiles into one partial
result (O(N) arrays, plus its candidate near-duplicate links for ``"representative"``), the
partial results are merged pairwise on the workers (a tree reduce), and the driver finishes
the groups: components from the merged forest, representatives decided in index order from
the links, as the in-process ``_cover`` decides them. The result is identical to the
in-process engine's: best partners are compared on the same reference similarity with the
same tie rule, which does not depend on the order of the tiles, and neither do union-find
components.

A task that is lost with its worker is recomputed by Dask from the same inputs, so a dead
worker changes nothing but the time taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.embeddings import check_vectors
from enrich.redundancy import (
    RedundancyResult,
    _check_options,
    _is_link,
    _labels,
    _merge,
    _Partial,
    _Pass,
)
from enrich.similarity import float32_error, normalize_rows, row_sqnorms

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["redundancy"]


@dataclass
class _Best:
    """One task's best partners (float64 reference similarity, lowest index on ties), its
    near-duplicate forest (components) and its candidate links (representatives)."""

    best: np.ndarray  # (n,) float64
    near: np.ndarray  # (n,) int64
    parent: np.ndarray  # (n,) int64, or (0,) unless components
    links: np.ndarray  # (m, 2) int64 pairs i < j with a tile value >= thr - err
    values: np.ndarray  # (m,) float32 tile values of those pairs


def _fold_tiles(
    Xn: np.ndarray, tiles: list[tuple[int, int]], thr: float, block: int, components: bool
) -> _Best:
    """Worker task: the in-process `_Partial.tile` over these block pairs, with no
    representatives (they are decided in index order on the driver, from the links)."""
    err = float32_error(Xn.shape[1])
    p = _Pass(
        Xn=Xn,
        sq=row_sqnorms(Xn),
        block=block,
        err=err,
        thr=thr,
        rep=np.full(0, -1, dtype=np.int64),
    )
    part = _Partial(len(Xn), block, components)
    links, values = [], []
    for bi, bj in tiles:
        part.tile(p, bi, bj)
        if not components:
            i0, j0 = bi * block, bj * block
            T = part.buffer[: min(block, len(Xn) - i0), : min(block, len(Xn) - j0)]
            hit = T >= np.float32(thr - err)
            if bi == bj:
                hit &= np.triu(np.ones(hit.shape, dtype=bool), k=1)
            ii, jj = np.nonzero(hit)
            links.append(np.stack([ii + i0, jj + j0], axis=1))
            values.append(T[ii, jj])
    return _Best(
        part.best,
        part.near,
        part.parent,
        np.concatenate(links) if links else np.empty((0, 2), dtype=np.int64),
        np.concatenate(values) if values else np.empty(0, dtype=np.float32),
    )


def _merge_pair(a: _Best, b: _Best) -> _Best:
    """Worker task: the in-process merge; candidate links are concatenated."""
    # _merge updates its first argument in place: work on a copy, so that a retried task
    # (after a worker died) sees its inputs unchanged.
    first = _Best(*(np.array(v, copy=True) for v in vars(a).values()))
    # (_merge reads only best, near and parent, which _Best has as _Partial does)
    best, near, parent = _merge([first, b])  # type: ignore[list-item]
    return _Best(
        best,
        near,
        parent,
        np.concatenate([a.links, b.links]),
        np.concatenate([a.values, b.values]),
    )


def _representatives(
    Xn: np.ndarray, links: np.ndarray, values: np.ndarray, thr: float
) -> np.ndarray:
    """Greedy representatives in index order, as the in-process `_cover` decides them: the
    lowest image not yet covered becomes a representative and covers every later image not
    yet covered whose reference similarity to it is >= thr."""
    n = len(Xn)
    rep = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((links[:, 1], links[:, 0]))
    links, values = links[order], values[order]
    starts = np.searchsorted(links[:, 0], np.arange(n + 1))
    sq, err = row_sqnorms(Xn), float32_error(Xn.shape[1])
    for i in range(n):
        if rep[i] == -1:
            rep[i] = i
        if rep[i] != i:
            continue
        for k in range(starts[i], starts[i + 1]):
            j = int(links[k, 1])
            if rep[j] == -1 and _is_link(float(values[k]), Xn, sq, i, j, thr, err):
                rep[j] = i
    return rep


def redundancy(
    X: Any,
    client: Client,
    *,
    group_threshold: float = 0.95,
    group_method: str = "representative",
    block: int = 1024,
    tasks_per_worker: int = 4,
    progress: Callable[[int], None] | None = None,
) -> RedundancyResult:
    """Each image's maximum cosine similarity to any other image, exactly, on Dask workers.

    Same parameters and result as :func:`enrich.redundancy.redundancy`, plus the client.
    Every worker receives the normalized embeddings once (N·d·4 bytes) and holds O(N)
    partial results per task.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims)
    client : distributed.Client
    group_threshold : float
    group_method : {"representative", "components"}
        As in-process. Representatives are decided on the driver from the candidate links
        the workers return (pairs at or above the threshold, less the float32 error): memory
        O(N + links).
    block : int
        Tile size, as in the in-process engine.
    tasks_per_worker : int
        Tasks per worker (more balance the load; each returns O(N) arrays).
    progress : callable, optional
        Called with the number of tiles done, as tasks finish.

    Returns
    -------
    RedundancyResult
        ``info`` records the block, the engine and the number of workers and tasks.
    """
    from distributed import as_completed

    from enrich.distributed._client import n_workers

    _check_options(group_threshold, group_method, block)
    group_threshold = float(group_threshold)
    Xn = normalize_rows(check_vectors(X))
    n = len(Xn)
    block = int(min(block, n))
    components = group_method == "components"
    nb = -(-n // block)
    tiles = [(bi, bj) for bi in range(nb) for bj in range(bi, nb)]
    workers = n_workers(client)
    n_tasks = max(1, min(len(tiles), workers * max(1, tasks_per_worker)))
    shares = [tiles[t::n_tasks] for t in range(n_tasks)]
    [data] = client.scatter([Xn], broadcast=True, hash=False)
    futures = [
        client.submit(_fold_tiles, data, share, group_threshold, block, components, pure=False)
        for share in shares
    ]
    size = {f.key: len(sh) for f, sh in zip(futures, shares, strict=True)}
    if progress is not None:
        for done in as_completed(futures):
            progress(size[done.key])
    # Pairwise tree reduce on the workers; the merge is exact and order-free.
    level = futures
    while len(level) > 1:
        nxt = [
            client.submit(_merge_pair, level[k], level[k + 1], pure=False)
            for k in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    total: _Best = level[0].result()
    del data
    if components:
        group = _labels(total.parent)
    else:
        group = _representatives(Xn, total.links, total.values, group_threshold)
    return RedundancyResult(
        max_similarity=np.clip(total.best, -1.0, 1.0).astype(np.float32),
        nearest=total.near,
        group=group,
        group_threshold=group_threshold,
        info={"block": block, "engine": "dask", "workers": workers, "tasks": n_tasks},
        group_method=group_method,
    )
