"""ENRICH selection on Dask: exact on one worker, or a composable coreset across shards.

``mode="exact"`` sends the embeddings to one worker (or, from a Zarr store, has that worker
read them) and runs the in-process kernel there (:class:`enrich.select.EnrichSelector`): the
order is the in-process order, and the driver stays free. It needs the embeddings (and the
kernel's working copies, about 3x their size) to fit one worker's memory, and says so when
they do not.

``mode="sharded"`` is exact too, for embeddings larger than one worker: the rows stay on the
workers in shards, each keeping its shard's running max-similarity vector, and the driver
batches picks with an exact lazy bound (:mod:`enrich.distributed.sharded`): the order is the
in-process order.

``mode="composable"`` is approximate: the rows are cut into shards, each worker runs the
greedy max-min on its shard (from the same initial set) for `budget` picks, and the greedy
then runs once more on the union of the shard picks. Greedy max-min is a 2-approximation of
the k-center problem on one machine (Gonzalez 1985); run on shards and then on the union of
their picks it is a composable coreset with an O(1) approximation (Malkomes et al., NeurIPS
2015; Ceccarello et al., VLDB 2019, give 2+ε with larger shard outputs). What is lost is
measured, not assumed: the result reports its covering radius (how far the farthest image is
from the chosen set), which a benchmark compares with the exact order's
(``benchmarks/bench_dask.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError
from enrich.select import EnrichSelector
from enrich.select._greedy import greedy_order
from enrich.select.base import InitialSpec, RankResult, resolve_budget, resolve_initial
from enrich.similarity import normalize_rows

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["MODES", "covering", "rank"]

MODES = ("exact", "sharded", "composable")
# The exact kernel holds the vectors, a normalized copy and its groups' packed copy.
_EXACT_MEMORY_FACTOR = 3.5


def _fit_exact(
    X: np.ndarray, initial: InitialSpec, budget: int | None, seed: int | None
) -> RankResult:
    """Worker task: the in-process selector, unchanged."""
    return EnrichSelector(budget=budget, seed=seed).fit(X, initial=initial).result_


def _fit_exact_store(
    source: Any, initial: InitialSpec, budget: int | None, seed: int | None
) -> RankResult:
    """Worker task: read and check the whole store here, then the in-process selector."""
    from enrich.distributed._rows import read_checked

    return _fit_exact(read_checked(source, 0, source.n), initial, budget, seed)


def _shard_picks(Xs: np.ndarray, n_init: int, k: int) -> np.ndarray:
    """Worker task: greedy max-min on one shard, seeded with the initial images.

    `Xs` holds only the initial images' rows, first, then the shard's own rows (the worker
    never sees the other shards). Returns up to `k` positions in `Xs` (fewer if the shard
    is smaller); the driver maps them back to image indices.
    """
    k = min(k, len(Xs) - n_init)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    picks, _ = greedy_order(Xs, np.arange(n_init, dtype=np.int64), k)
    return picks


def _covering_part(
    X: np.ndarray, rows: np.ndarray, C: np.ndarray, ids: np.ndarray, block: int = 2048
) -> tuple[float, int]:
    """Worker task: the lowest max-similarity to the chosen unit rows `C` among `X[rows]`,
    and its image index (``ids``, aligned with `rows`). On a worker `X` is its shard only."""
    worst, arg = np.inf, -1
    for a in range(0, len(rows), block):
        R = normalize_rows(X, rows=rows[a : a + block])  # (b, d)
        best = np.full(len(R), -np.inf, dtype=np.float32)
        for c in range(0, len(C), 8 * block):
            np.maximum(best, (R @ C[c : c + 8 * block].T).max(axis=1), out=best)
        i = int(np.argmin(best))
        if best[i] < worst:
            worst, arg = float(best[i]), int(ids[a + i])
    return worst, arg


def _read_at(source: Any, idx: np.ndarray) -> np.ndarray:
    """The stored (not normalised) float32 rows at positions `idx` (any order, repeats
    allowed), from an array or a store; store rows are checked as the workers check them."""
    from enrich.distributed._rows import StoreRows, _checked, _group

    idx = np.asarray(idx, dtype=np.int64)
    if not isinstance(source, StoreRows):
        return np.ascontiguousarray(source[idx])
    if len(idx) == 0:
        return np.empty((0, source.d), dtype=np.float32)
    uniq, inv = np.unique(idx, return_inverse=True)
    group = _group(source.path)
    raw = group["vectors"].get_orthogonal_selection((uniq, slice(None)))
    ids = lambda: group["ids"].get_orthogonal_selection(uniq)  # noqa: E731
    return _checked(raw, ids, f"embeddings {source.path}")[inv]


def _read_shard(source: Any, rows: np.ndarray) -> np.ndarray:
    """The stored rows at `rows`, sorted positions within one contiguous range of the store
    (a shard): the range is read (and checked) once, whole chunks where it can."""
    from enrich.distributed._rows import read_checked

    if len(rows) == 0:
        return np.empty((0, source.d), dtype=np.float32)
    a = int(rows[0])
    return np.ascontiguousarray(read_checked(source, a, int(rows[-1]) + 1)[rows - a])


def _shard_picks_store(source: Any, init: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Worker task: :func:`_shard_picks` on rows this worker reads from the store itself."""
    Xs = np.concatenate([_read_at(source, init), _read_shard(source, rows)])
    return _shard_picks(Xs, len(init), k)


def _covering_store(source: Any, rows: np.ndarray, C: np.ndarray) -> tuple[float, int]:
    """Worker task: :func:`_covering_part` on a shard this worker reads from the store."""
    Xs = _read_shard(source, rows)
    return _covering_part(Xs, np.arange(len(rows)), C, rows)


def _exact_with_retries(
    client: Client, Xv: Any, initial: InitialSpec, budget: int | None, seed: int | None
) -> tuple[RankResult, int]:
    """Mode "exact": the selector on one worker. A worker lost mid-run takes the scattered
    embeddings with it, so Dask cannot rerun the task alone: send them again and rerun (the
    result is a pure function of its inputs), up to ``MAX_RECOVERIES`` times."""
    from enrich.distributed._rows import StoreRows
    from enrich.distributed.sharded import MAX_RECOVERIES, _lost

    lost = 0
    while True:
        try:
            if isinstance(Xv, StoreRows):  # the worker reads the store itself
                task: Any = client.submit(_fit_exact_store, Xv, initial, budget, seed, pure=False)
            else:
                [data] = client.scatter([Xv], hash=False)
                task = client.submit(_fit_exact, data, initial, budget, seed, pure=False)
            result = task.result()
            return result, lost
        except Exception as exc:
            if not _lost(exc):
                raise
            lost += 1
            if lost > MAX_RECOVERIES:
                raise EnrichError(
                    f"exact ranking lost its Dask worker {lost} times (more than "
                    f"{MAX_RECOVERIES}); is the cluster healthy? nothing was written"
                ) from None
            time.sleep(0.5 * lost)  # let the scheduler notice the loss before sending again
            client.wait_for_workers(1, timeout=60)


def _rank_sharded(
    X: Any,
    client: Client,
    initial: InitialSpec,
    budget: int | None,
    seed: int | None,
    n_shards: int,
    progress: Callable[[int], None] | None,
    candidates: int,
    workers: int,
) -> RankResult:
    """Mode "sharded": the seed set drawn as in-process, then :func:`rank_sharded`."""
    from enrich._outputs import check_seed
    from enrich.distributed.sharded import rank_sharded

    # a numpy array is checked here, once; a lazy one by the workers, each its own rows
    Xv = check_vectors(X) if isinstance(X, np.ndarray) or not hasattr(X, "shape") else X
    if len(Xv.shape) != 2 or Xv.shape[0] < 2:
        raise EnrichError(f"embeddings have shape {tuple(Xv.shape)}: expected (N >= 2, d)")
    n = int(Xv.shape[0])
    rng = np.random.default_rng(check_seed(seed))
    init = resolve_initial(initial, n, rng)
    k = resolve_budget(budget, n, len(init))
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise EnrichError(f"candidates={candidates!r}: expected a whole number >= 1")
    picks, sims, info = rank_sharded(
        Xv, client, init, k, n_shards=n_shards, candidates=candidates, progress=progress
    )
    info = {"engine": "dask", "mode": "sharded", "approximate": False, "workers": workers, **info}
    return RankResult(
        np.concatenate([init, picks]),
        np.concatenate([np.full(len(init), np.nan), sims]),
        len(init),
        EnrichSelector.name,
        seed,
        info,
    )


def covering(
    X: Any, chosen: np.ndarray, client: Client | None = None, *, n_shards: int | None = None
) -> dict[str, Any]:
    """How well `chosen` covers every image: the k-center objective of a selection.

    Returns ``covering_similarity`` (the lowest, over all images, of the highest cosine
    similarity to a chosen image), ``covering_radius`` (the same as a distance between unit
    vectors, sqrt(2 - 2·similarity), a metric; smaller is better) and the farthest image.
    With a client the O(N·k·d) pass is mapped over row shards: each shard's rows are sent
    to one worker (never all rows to every worker), with the chosen rows; each task returns
    its shard's lowest similarity and the driver keeps the lowest.

    >>> X = np.array([[1.0, 0], [0.0, 1], [0.6, 0.8]])
    >>> round(covering(X, np.array([0]))["covering_similarity"], 3)
    0.0
    """
    from enrich.distributed._rows import StoreRows, read_checked

    if isinstance(X, StoreRows) and client is None:
        X = read_checked(X, 0, X.n)
    store = isinstance(X, StoreRows)  # then each task reads its own rows from the store
    if not store:
        X = check_vectors(X)
    chosen = np.asarray(chosen, dtype=np.int64)
    rest = np.setdiff1d(np.arange(X.shape[0]), chosen)
    # (k, d): the only rows every task shares
    C = normalize_rows(_read_at(X, chosen)) if store else normalize_rows(X, rows=chosen)
    if len(rest) == 0:
        worst, arg = 1.0, -1
    elif client is None:
        worst, arg = _covering_part(X, rest, C, rest)
    else:
        from enrich.distributed._client import n_workers

        shards = np.array_split(rest, min(len(rest), n_shards or n_workers(client)))
        [c_data] = client.scatter([C], broadcast=True, hash=False)
        if store:
            tasks = [client.submit(_covering_store, X, s, c_data, pure=False) for s in shards]
        else:  # one scatter per shard: Dask places each on one worker, round-robin
            data = client.scatter([X[s] for s in shards], hash=False)
            tasks = [
                client.submit(_covering_part, d, np.arange(len(s)), c_data, s, pure=False)
                for d, s in zip(data, shards, strict=True)
            ]
        parts = client.gather(tasks)
        del tasks
        worst, arg = min(parts, key=lambda p: (p[0], p[1]))
    sim = min(1.0, worst)
    return {
        "covering_similarity": sim,
        "covering_radius": float(np.sqrt(max(0.0, 2.0 - 2.0 * sim))),
        "farthest_image": arg,
        "n_chosen": len(chosen),
    }


def rank(
    X: Any,
    client: Client,
    *,
    mode: str = "exact",
    initial: InitialSpec = None,
    budget: int | None = None,
    seed: int | None = None,
    n_shards: int | None = None,
    progress: Callable[[int], None] | None = None,
    candidates: int = 4096,
) -> RankResult:
    """The ENRICH labeling order on Dask workers.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims)
        For "sharded", also a lazy array such as a ``zarr.Array``: each worker then reads
        its own rows, and the driver never holds them. An embeddings store
        (:class:`enrich.distributed._rows.StoreRows`, what the CLI passes for a Zarr input)
        is read by the workers in "sharded" and "exact" (one worker reads it all) and
        checked there, bad rows named by their ids; in "composable" each task reads its
        shard's rows (and the initial images'), the driver only the union of the picks.
    client : distributed.Client
    mode : {"exact", "sharded", "composable"}
        "exact": the in-process order, computed on one worker. "sharded": the in-process
        order, the rows kept on the workers in `n_shards` shards. "composable": approximate,
        greedy on each of `n_shards` row shards then on the union of their picks; needs a
        `budget`.
    initial, budget, seed
        As for :func:`enrich.select.rank`; the random initial set is drawn the same way.
    n_shards : int, optional
        Shards for "sharded" and "composable" (default: one per worker).
    progress : callable, optional
        Called with the number of images ranked, when done (per round for "sharded").
    candidates : int
        "sharded": candidates each shard sends per round.

    Returns
    -------
    RankResult
        ``info`` records the engine and mode; "composable" adds ``approximate: True`` and its
        covering radius (see :func:`covering`).
    """
    from enrich.distributed._client import n_workers

    if mode not in MODES:
        raise EnrichError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
    workers = n_workers(client)
    if mode == "sharded":
        return _rank_sharded(
            X, client, initial, budget, seed, n_shards or workers, progress, candidates, workers
        )
    from enrich.distributed._rows import StoreRows

    if isinstance(X, StoreRows):
        # exact: one worker reads and checks it; composable: each task its shard's rows.
        # The driver never holds the rows.
        Xv: Any = X
        nbytes = 4 * X.n * X.d
    else:
        Xv = check_vectors(X)
        nbytes = Xv.nbytes
    if mode == "exact":
        need = _EXACT_MEMORY_FACTOR * nbytes
        limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
        biggest = max(limits, default=0)
        if biggest and need > biggest:
            raise EnrichError(
                f"exact ranking needs about {need / 2**30:.1f} GiB on one worker "
                f"({Xv.shape[0]:,} x {Xv.shape[1]} float32), but the largest worker has "
                f"{biggest / 2**30:.1f} GiB; give workers more memory, or use --mode sharded "
                "(the same exact order, the rows spread over the workers)"
            )
        result, lost = _exact_with_retries(client, Xv, initial, budget, seed)
        exact_info = dict(result.info or {})
        exact_info.update(engine="dask", mode="exact", approximate=False, workers=workers)
        exact_info["lost_workers"] = lost
        if progress is not None:
            progress(len(result.order) - result.n_initial)
        return RankResult(
            result.order, result.max_similarity, result.n_initial, result.method, seed, exact_info
        )

    rng = np.random.default_rng(seed)
    n = int(Xv.shape[0])
    init = resolve_initial(initial, n, rng)
    if budget is None:
        raise EnrichError(
            "--mode composable needs a --budget: it picks a subset (e.g. 10% of the images), "
            "it does not rank them all"
        )
    k = resolve_budget(budget, n, len(init))
    rest = np.setdiff1d(np.arange(n), init)
    n_shards = max(1, min(n_shards or workers, len(rest)))
    shards = np.array_split(rest, n_shards)  # contiguous row ranges, initial images removed
    # each worker gets only its shards' rows (and the initial images'), never all N
    locals_ = [np.concatenate([init, s]) for s in shards]
    if isinstance(Xv, StoreRows):  # each task reads its shard (and the initial rows)
        futures = [client.submit(_shard_picks_store, Xv, init, s, k, pure=False) for s in shards]
    else:
        data = client.scatter([Xv[loc] for loc in locals_], hash=False)
        futures = [
            client.submit(_shard_picks, d, len(init), k, pure=False)
            for d in data  # one future per scattered shard, so the task runs where it lies
        ]
        del data
    shard_picks = [loc[p] for loc, p in zip(locals_, client.gather(futures), strict=True)]
    del futures
    union = np.concatenate([init, np.sort(np.concatenate(shard_picks))])
    picks, sims = greedy_order(_read_at(Xv, union), np.arange(len(init), dtype=np.int64), k)
    picks = union[picks]
    order = np.concatenate([init, picks])
    cover = covering(Xv, order, client, n_shards=n_shards)
    if progress is not None:
        progress(k)
    info: dict[str, Any] = {
        "engine": "dask",
        "mode": "composable",
        "approximate": True,
        "workers": workers,
        "n_shards": n_shards,
        "coreset_size": len(union),
        **cover,
    }
    return RankResult(
        order,
        np.concatenate([np.full(len(init), np.nan), sims]),
        len(init),
        EnrichSelector.name,
        seed,
        info,
    )
