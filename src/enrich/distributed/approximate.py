"""Approximate redundancy (faiss) on Dask: one index, every worker searching its own rows.

One task builds the faiss index (IVF: k-means on the seeded training sample, then every row
added; HNSW: every row added), reading the rows itself, and returns it serialized. Every
search task then takes a range of rows (whole Zarr chunks), reads them, searches them in the
index (which Dask copies once to each worker that needs it, and each worker deserializes
once), and recomputes the found pair's similarity on the reference similarity, as
in-process (:mod:`enrich.approximate`). The recall sample is checked by brute force on the
workers too, each task streaming every row past its share of the sample.

Each worker holds the whole index: N·d·4 bytes of vectors plus 8 bytes per row (IVF's id map),
about 0.5 GB at 1M x 128 and 5.2 GB at 10M x 128.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.approximate import (
    ApproxOptions,
    _faiss,
    _whole,
    exact_rows,
    finish,
    new_index,
    prepare_for_search,
    recall_report,
    recall_rows,
    search_rows,
    training_rows,
)
from enrich.distributed._rows import StoreRows, blocks, read_rows, read_some, source_shape
from enrich.embeddings import check_vectors
from enrich.redundancy import RedundancyResult, _check_options
from enrich.similarity import normalize_rows

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["redundancy"]

# One deserialized index per worker process, for the run that sent it.
_INDEX: dict[str, Any] = {}


def _build(source: Any, params: dict[str, Any], seed: int, block: int) -> np.ndarray:
    """Worker task: the index over every row, serialized (uint8)."""
    faiss = _faiss()
    n, d = source_shape(source)
    index = new_index(d, params, seed)
    if params["method"] == "ivf":
        index.train(read_some(source, training_rows(n, params, seed)))
    for _, B in blocks(source, block):
        index.add(B)
    return np.asarray(faiss.serialize_index(index))


def _index(token: str, data: np.ndarray, params: dict[str, Any]) -> Any:
    if token not in _INDEX:
        _INDEX.clear()  # a previous run's index is not needed again
        _INDEX[token] = prepare_for_search(_faiss().deserialize_index(data), params)
    return _INDEX[token]


def _forget_index() -> None:
    _INDEX.clear()


def _search(
    source: Any,
    a: int,
    b: int,
    data: np.ndarray,
    token: str,
    params: dict[str, Any],
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Worker task: rows ``a:b``'s found partners and near-duplicate links."""
    index = _index(token, data, params)
    return search_rows(index, read_rows(source, a, b), a, threshold=threshold, links=True)


def _exact(source: Any, rows: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Worker task: the exact best partners of `rows`, streaming every row past them."""
    return exact_rows(read_some(source, rows), rows, lambda: blocks(source, block))


def redundancy(
    X: Any,
    client: Client,
    *,
    options: ApproxOptions | None = None,
    group_threshold: float = 0.95,
    group_method: str = "representative",
    block: int | None = None,
    tasks_per_worker: int = 4,
    progress: Callable[[int], None] | None = None,
) -> RedundancyResult:
    """:func:`enrich.approximate.redundancy` on Dask workers.

    Parameters
    ----------
    X : array-like of shape (n_images, n_dims), or StoreRows
        Embeddings in memory (scattered once to every worker), or a Zarr store the workers
        read themselves (:class:`enrich.distributed._rows.StoreRows`).
    client : distributed.Client
    options, group_threshold, group_method
        As in-process.
    block : int, optional
        Rows read at a time (default: the store's chunk, or 65,536).
    tasks_per_worker : int
        Search tasks per worker.
    progress : callable, optional
        Called with the number of rows searched, as tasks finish.
    """
    from distributed import as_completed, wait

    from enrich.distributed._client import n_workers

    opts = options or ApproxOptions()
    opts.check()
    _check_options(group_threshold, group_method, 1)
    _faiss()  # a missing faiss fails on the driver, before any work
    if isinstance(X, StoreRows):
        source: Any = X
        block = block or X.chunk_rows
    else:
        source = None
        Xn = normalize_rows(check_vectors(X))
        block = block or 65536
    _whole("block", block)
    n, _ = source_shape(X if source is not None else Xn)
    params = opts.resolved(n)
    workers = n_workers(client)
    if source is None:
        [source] = client.scatter([Xn], broadcast=True, hash=False)
    start = time.perf_counter()
    built = client.submit(_build, source, params, opts.seed, block, pure=False)
    token = uuid.uuid4().hex
    sample = recall_rows(n, opts.recall_sample, opts.seed)
    parts = [p for p in np.array_split(sample, workers) if len(p)]
    checks = [client.submit(_exact, source, p, block, pure=False) for p in parts]
    wait([built])
    built_at = time.perf_counter()
    # Row ranges (whole chunks of a store), about tasks_per_worker per worker.
    unit = X.chunk_rows if isinstance(X, StoreRows) else 1
    n_units = -(-n // unit)
    per = unit * max(1, -(-n_units // (workers * max(1, tasks_per_worker))))
    ranges = [(a, min(n, a + per)) for a in range(0, n, per)]
    futures = [
        client.submit(
            _search, source, a, b, built, token, params, float(group_threshold), pure=False
        )
        for a, b in ranges
    ]
    size = {f.key: b - a for f, (a, b) in zip(futures, ranges, strict=True)}
    best = np.empty(n)
    near = np.empty(n, dtype=np.int64)
    links = []
    for done in as_completed(futures):
        k = futures.index(done)
        a, b = ranges[k]
        best[a:b], near[a:b], lk = done.result()
        links.append(lk)
        if progress is not None:
            progress(size[done.key])
        done.release()
    built.release()
    client.run(_forget_index)  # the workers' copies of the index are not needed any more
    lost = np.flatnonzero(near < 0)
    if len(lost):
        best[lost], near[lost] = client.submit(_exact, source, lost, block, pure=False).result()
    searched_at = time.perf_counter()
    exact = np.concatenate([c.result()[0] for c in checks]) if checks else np.empty(0)
    params = {**params, "seed": opts.seed, "n_no_partner_found": len(lost)}
    params["recall"] = recall_report(best[sample], exact, params)
    return finish(
        n,
        best,
        near,
        np.concatenate(links) if links else np.empty((0, 2), dtype=np.int64),
        group_threshold=group_threshold,
        group_method=group_method,
        info={
            "approximate": params,
            "engine": "dask",
            "workers": workers,
            "tasks": len(futures),
            "reads": "store" if isinstance(X, StoreRows) else "scattered",
            # the index is built by one task (the recall sample is checked meanwhile)
            "seconds_index": round(built_at - start, 3),
            "seconds_search": round(searched_at - built_at, 3),
        },
    )
