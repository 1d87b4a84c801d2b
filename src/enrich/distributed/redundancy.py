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
the links (each checked on the reference similarity by the worker that found it), as the
in-process ``_cover`` decides them. Tasks are squares of the block grid, so that with a Zarr
store each task reads only its own rows from the store. The result is identical to the
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

import numba
import numpy as np

from enrich.approximate import representatives
from enrich.distributed._rows import StoreRows, read_rows
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
    links: np.ndarray  # (m, 2) int64 pairs i < j at or above thr (reference similarity)


def _unit_rows_for(source: Any, tiles: list[tuple[int, int]], block: int) -> np.ndarray:
    """The unit rows these tiles need, at their global positions in an (N, d) array.

    From the scattered array: that array. From a store: a full-size array of which only the
    tiles' row blocks are read and written; the other rows are never touched, so their pages
    are never allocated and the task's memory is that of its own blocks."""
    if not isinstance(source, StoreRows):
        return np.asarray(source)
    n, d = source.n, source.d
    Xn = np.empty((n, d), dtype=np.float32)  # untouched pages stay unallocated
    for a, b in _runs(sorted({b for tile in tiles for b in tile}), block, n):
        Xn[a:b] = read_rows(source, a, b)  # a run of consecutive blocks in one read
    return Xn


def _runs(blocks: list[int], block: int, n: int) -> list[tuple[int, int]]:
    """Row ranges of runs of consecutive blocks (sorted)."""
    out: list[tuple[int, int]] = []
    for b in blocks:
        a = b * block
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], min(n, a + block))
        else:
            out.append((a, min(n, a + block)))
    return out


def _fold_tiles(
    source: Any, tiles: list[tuple[int, int]], thr: float, block: int, components: bool
) -> _Best:
    """Worker task: the in-process `_Partial.tile` over these block pairs, with no
    representatives (they are decided in index order on the driver, from the links, each
    checked here on the reference similarity)."""
    Xn = _unit_rows_for(source, tiles, block)
    n = len(Xn)
    err = float32_error(Xn.shape[1])
    sq = np.zeros(n, dtype=np.float64)
    for b in sorted({b for tile in tiles for b in tile}):
        a = b * block
        sq[a : a + block] = row_sqnorms(Xn[a : a + block])
    p = _Pass(Xn=Xn, sq=sq, block=block, err=err, thr=thr, rep=np.full(0, -1, dtype=np.int64))
    part = _Partial(n, block, components)
    links = []
    for bi, bj in tiles:
        part.tile(p, bi, bj)
        if not components:
            i0, j0 = bi * block, bj * block
            T = part.buffer[: min(block, n - i0), : min(block, n - j0)]
            hit = T >= np.float32(thr - err)
            if bi == bj:
                hit &= np.triu(np.ones(hit.shape, dtype=bool), k=1)
            ii, jj = np.nonzero(hit)
            pairs = np.stack([ii + i0, jj + j0], axis=1).astype(np.int64)
            keep = _true_links(pairs, T[ii, jj].astype(np.float64), Xn, sq, thr, err)
            links.append(pairs[keep])
    return _Best(
        part.best,
        part.near,
        part.parent,
        np.concatenate(links) if links else np.empty((0, 2), dtype=np.int64),
    )


@numba.njit(cache=True, nogil=True)
def _true_links(
    pairs: np.ndarray, values: np.ndarray, Xn: np.ndarray, sq: np.ndarray, thr: float, err: float
) -> np.ndarray:  # pragma: no cover - jitted
    keep = np.empty(pairs.shape[0], dtype=np.bool_)
    for k in range(pairs.shape[0]):
        keep[k] = _is_link(values[k], Xn, sq, pairs[k, 0], pairs[k, 1], thr, err)
    return keep


def _merge_pair(a: _Best, b: _Best) -> _Best:
    """Worker task: the in-process merge; links are concatenated."""
    # _merge updates its first argument in place: work on a copy, so that a retried task
    # (after a worker died) sees its inputs unchanged.
    first = _Best(*(np.array(v, copy=True) for v in vars(a).values()))
    # (_merge reads only best, near and parent, which _Best has as _Partial does)
    best, near, parent = _merge([first, b])  # type: ignore[list-item]
    return _Best(best, near, parent, np.concatenate([a.links, b.links]))


def _square_tasks(n_blocks: int, n_tasks: int) -> list[list[tuple[int, int]]]:
    """The upper triangle of block pairs, cut into squares of G x G blocks (G groups of
    consecutive blocks, G(G+1)/2 about `n_tasks`): a task reads only its two groups' rows,
    about 2N/G of them, not all N."""
    g = max(1, min(n_blocks, int((2 * n_tasks) ** 0.5)))
    groups = np.array_split(np.arange(n_blocks), g)
    tasks = []
    for x in range(g):
        for y in range(x, g):
            tiles = [(int(i), int(j)) for i in groups[x] for j in groups[y] if i <= j]
            if tiles:
                tasks.append(tiles)
    return tasks


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
    From an array in memory, every worker receives the normalized embeddings once (N·d·4
    bytes); from a Zarr store, each task reads only its own row blocks (about 2N/G rows for G
    groups of blocks) from the store. Each task holds O(N) partial results.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims), or StoreRows
        Embeddings in memory, or a Zarr store the workers read themselves
        (:class:`enrich.distributed._rows.StoreRows`; validated row by row on the workers).
    client : distributed.Client
    group_threshold : float
    group_method : {"representative", "components"}
        As in-process. Representatives are decided on the driver, in index order, from the
        links the workers return (pairs at or above the threshold on the reference
        similarity, checked on the workers): memory O(N + links).
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
    if isinstance(X, StoreRows):
        n = X.n
    else:
        Xn = normalize_rows(check_vectors(X))
        n = len(Xn)
    block = int(min(block, n))
    components = group_method == "components"
    nb = -(-n // block)
    workers = n_workers(client)
    tasks = _square_tasks(nb, workers * max(1, tasks_per_worker))
    if isinstance(X, StoreRows):
        data: Any = X  # each task reads its own row blocks from the store
    else:
        [data] = client.scatter([Xn], broadcast=True, hash=False)
    futures = [
        client.submit(_fold_tiles, data, share, group_threshold, block, components, pure=False)
        for share in tasks
    ]
    size = {f.key: len(sh) for f, sh in zip(futures, tasks, strict=True)}
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
    group = _labels(total.parent) if components else representatives(n, total.links)
    return RedundancyResult(
        max_similarity=np.clip(total.best, -1.0, 1.0).astype(np.float32),
        nearest=total.near,
        group=group,
        group_threshold=group_threshold,
        info={
            "block": block,
            "engine": "dask",
            "workers": workers,
            "tasks": len(tasks),
            "reads": "store" if isinstance(X, StoreRows) else "scattered",
        },
        group_method=group_method,
    )
