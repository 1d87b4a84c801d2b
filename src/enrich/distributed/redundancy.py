"""Exact redundancy on Dask: tiles of the all-pairs product mapped over workers, reduced.

The in-process engine (:func:`enrich.redundancy.redundancy`) walks the upper triangle of
``block x block`` similarity tiles and folds each one into per-image running maxima (value and
partner block, rows and columns kept apart) and a near-duplicate union-find forest; threads
each take every n-th tile and their partial results merge exactly. Here the same tiles, the
same per-tile kernel and the same exact merge run as Dask tasks: each task folds its share of
tiles into one partial result (O(N) arrays), the partial results are merged pairwise on the
workers (a tree reduce), and the driver finishes exactly as the in-process engine does (the
nearest partner inside the winning block, and group labels). The result is identical to the
in-process engine's: the maxima are maxima of the same float32 tile values, ties go to the
lowest partner block in both, and union-find components do not depend on the order of unions.

A task that is lost with its worker is recomputed by Dask from the same inputs, so a dead
worker changes nothing but the time taken.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError
from enrich.redundancy import RedundancyResult
from enrich.similarity import normalize_rows

# The in-process engine's per-tile kernel and exact merge, shared so both engines agree. Two
# versions of that engine exist while branches merge: offsets and float32 maxima (API 1), or
# block indices with float64 reference ties and representative groups (API 2, `_Pass`).
_engine: Any = importlib.import_module("enrich.redundancy")
_TILE_API = 2 if hasattr(_engine, "_Pass") else 1
_sim: Any = importlib.import_module("enrich.similarity")

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["redundancy"]


@dataclass
class _Maxima:
    """One task's share of the reduction: what :func:`enrich.redundancy._merge` combines."""

    row_best: np.ndarray  # (n,) float32, partners j >= i
    row_block: np.ndarray  # (n,) int64, first index of that partner block
    col_best: np.ndarray  # (n,) float32, partners j < i
    col_block: np.ndarray  # (n,) int64
    parent: np.ndarray  # (n,) int64 union-find forest of near-duplicate links


def _fold_tiles(Xn: np.ndarray, tiles: list[tuple[int, int]], thr: float, block: int) -> _Maxima:
    """Worker task: fold these tiles with the in-process engine's per-tile kernel."""
    part = _engine._Partial(len(Xn), block)
    part.run(Xn, tiles, np.float32(thr), None)
    if part.error is not None:
        raise part.error
    return _Maxima(part.row_best, part.row_block, part.col_best, part.col_block, part.parent)


def _merge_pair(a: _Maxima, b: _Maxima) -> _Maxima:
    """Worker task: the in-process engine's exact merge of two partial results."""
    # _merge updates its first argument in place: work on a copy, so that a retried task
    # (after a worker died) sees its inputs unchanged.
    first = _Maxima(*(np.array(v, copy=True) for v in vars(a).values()))
    merged = _engine._merge([first, b])  # _Partial's attributes
    return _Maxima(*merged)


@dataclass
class _Best:
    """API 2: one task's best partners (float64 reference similarity, lowest index on ties),
    its near-duplicate forest (components) and its candidate links (representatives)."""

    best: np.ndarray  # (n,) float64
    near: np.ndarray  # (n,) int64
    parent: np.ndarray  # (n,) int64, or (0,) unless components
    links: np.ndarray  # (m, 2) int64 pairs i < j with a tile value >= thr - err
    values: np.ndarray  # (m,) float32 tile values of those pairs


def _fold_tiles_v2(
    Xn: np.ndarray, tiles: list[tuple[int, int]], thr: float, block: int, components: bool
) -> _Best:
    """Worker task (API 2): the in-process `_Partial.tile` over these block pairs, with no
    representatives (they are decided in index order on the driver, from the links)."""
    err = _sim.float32_error(Xn.shape[1])
    p = _engine._Pass(
        Xn=Xn,
        sq=_sim.row_sqnorms(Xn),
        block=block,
        err=err,
        thr=thr,
        rep=np.full(0, -1, dtype=np.int64),
    )
    part = _engine._Partial(len(Xn), block, components)
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


def _merge_pair_v2(a: _Best, b: _Best) -> _Best:
    """Worker task (API 2): the in-process merge; candidate links are concatenated."""
    first = _Best(*(np.array(v, copy=True) for v in vars(a).values()))
    best, near, parent = _engine._merge([first, b])
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
    sq, err = _sim.row_sqnorms(Xn), _sim.float32_error(Xn.shape[1])
    for i in range(n):
        if rep[i] == -1:
            rep[i] = i
        if rep[i] != i:
            continue
        for k in range(starts[i], starts[i + 1]):
            j = int(links[k, 1])
            if rep[j] == -1 and _engine._is_link(float(values[k]), Xn, sq, i, j, thr, err):
                rep[j] = i
    return rep


def redundancy(
    X: Any,
    client: Client,
    *,
    group_threshold: float = 0.95,
    group_method: str | None = None,
    block: int = 1024,
    tasks_per_worker: int = 4,
    progress: Callable[[int], None] | None = None,
) -> RedundancyResult:
    """Each image's maximum cosine similarity to any other image, exactly, on Dask workers.

    Same parameters and result as :func:`enrich.redundancy.redundancy`, plus the client.
    Every worker receives the normalized embeddings once (N·d·4 bytes) and holds O(N)
    partial maxima per task.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims)
    client : distributed.Client
    group_threshold : float
    group_method : {"representative", "components"}, optional
        As in-process (None: the in-process default). Representatives are decided on the
        driver from the candidate links the workers return (pairs at or above the threshold,
        less the float32 error): memory O(N + links).
    block : int
        Tile size, as in the in-process engine.
    tasks_per_worker : int
        Tasks per worker (more balance the load; each returns O(N) arrays).
    progress : callable, optional
        Called with the number of tiles done, as tasks finish.

    Returns
    -------
    RedundancyResult
        ``info`` records the engine, the scheduler and the number of workers and tasks.
    """
    from distributed import as_completed

    from enrich.distributed._client import n_workers

    if not -1.0 <= float(group_threshold) <= 1.0:
        raise EnrichError(f"group_threshold={group_threshold}: expected a similarity in [-1, 1]")
    if _TILE_API == 2:
        return _redundancy_v2(
            X,
            client,
            group_threshold=float(group_threshold),
            group_method=group_method or _engine.GROUP_METHODS[0],
            block=block,
            tasks_per_worker=tasks_per_worker,
            progress=progress,
        )
    if group_method not in (None, "components"):
        raise EnrichError(f"group_method={group_method!r}: this engine has 'components' only")
    Xn = normalize_rows(check_vectors(X))
    n = len(Xn)
    tiles = [(i0, j0) for i0 in range(0, n, block) for j0 in range(i0, n, block)]
    workers = n_workers(client)
    n_tasks = max(1, min(len(tiles), workers * max(1, tasks_per_worker)))
    shares = [tiles[t::n_tasks] for t in range(n_tasks)]
    [data] = client.scatter([Xn], broadcast=True, hash=False)
    thr = float(group_threshold)
    futures = [client.submit(_fold_tiles, data, share, thr, block, pure=False) for share in shares]
    size = {f.key: len(s) for f, s in zip(futures, shares, strict=True)}
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
    total: _Maxima = level[0].result()
    del data
    # Finish as the in-process engine does: the column side (partners j < i) wins ties.
    from_cols = total.col_best >= total.row_best
    best_block = np.where(from_cols, total.col_block, total.row_block)
    best, arg = _engine._nearest_in_blocks(Xn, best_block, block)
    return RedundancyResult(
        max_similarity=np.minimum(best, np.float32(1.0)),
        nearest=arg,
        group=_engine._labels(total.parent),
        group_threshold=thr,
        info={"block": block, "engine": "dask", "workers": workers, "tasks": n_tasks},
    )


def _redundancy_v2(
    X: Any,
    client: Client,
    *,
    group_threshold: float,
    group_method: str,
    block: int,
    tasks_per_worker: int,
    progress: Callable[[int], None] | None,
) -> RedundancyResult:
    from distributed import as_completed

    from enrich.distributed._client import n_workers

    if group_method not in _engine.GROUP_METHODS:
        raise EnrichError(
            f"group_method={group_method!r}: expected one of {', '.join(_engine.GROUP_METHODS)}"
        )
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
        client.submit(_fold_tiles_v2, data, share, group_threshold, block, components, pure=False)
        for share in shares
    ]
    size = {f.key: len(sh) for f, sh in zip(futures, shares, strict=True)}
    if progress is not None:
        for done in as_completed(futures):
            progress(size[done.key])
    level = futures
    while len(level) > 1:
        nxt = [
            client.submit(_merge_pair_v2, level[k], level[k + 1], pure=False)
            for k in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    total: _Best = level[0].result()
    del data
    if components:
        group = _engine._labels(total.parent)
    else:
        group = _representatives(Xn, total.links, total.values, group_threshold)
    api2: dict[str, Any] = {"group_method": group_method}  # a field of API 2's result
    return RedundancyResult(
        max_similarity=np.clip(total.best, -1.0, 1.0).astype(np.float32),
        nearest=total.near,
        group=group,
        group_threshold=group_threshold,
        info={"block": block, "engine": "dask", "workers": workers, "tasks": n_tasks},
        **api2,
    )
