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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError

# The in-process engine's per-tile kernel and exact merge, shared so both engines agree.
from enrich.redundancy import RedundancyResult, _labels, _merge, _nearest_in_blocks, _Partial
from enrich.similarity import normalize_rows

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
    part = _Partial(len(Xn), block)
    part.run(Xn, tiles, np.float32(thr), None)
    if part.error is not None:
        raise part.error
    return _Maxima(part.row_best, part.row_block, part.col_best, part.col_block, part.parent)


def _merge_pair(a: _Maxima, b: _Maxima) -> _Maxima:
    """Worker task: the in-process engine's exact merge of two partial results."""
    # _merge updates its first argument in place: work on a copy, so that a retried task
    # (after a worker died) sees its inputs unchanged.
    first = _Maxima(*(np.array(v, copy=True) for v in vars(a).values()))
    merged = _merge([first, b])  # type: ignore[list-item]  # _Partial's attributes
    return _Maxima(*merged)


def redundancy(
    X: Any,
    client: Client,
    *,
    group_threshold: float = 0.95,
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
    Xn = normalize_rows(check_vectors(X))
    n = len(Xn)
    tiles = [(i0, j0) for i0 in range(0, n, block) for j0 in range(i0, n, block)]
    workers = n_workers(client)
    n_tasks = max(1, min(len(tiles), workers * max(1, tasks_per_worker)))
    shares = [tiles[t::n_tasks] for t in range(n_tasks)]
    [data] = client.scatter([Xn], broadcast=True)
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
    best, arg = _nearest_in_blocks(Xn, best_block, block)
    return RedundancyResult(
        max_similarity=np.minimum(best, np.float32(1.0)),
        nearest=arg,
        group=_labels(total.parent),
        group_threshold=thr,
        info={"block": block, "engine": "dask", "workers": workers, "tasks": n_tasks},
    )
