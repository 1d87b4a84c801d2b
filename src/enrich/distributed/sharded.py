"""Exact ENRICH selection with the rows kept on the workers in shards.

Each shard of rows lives on one worker, in a Dask actor (:class:`Shard`) that holds the rows
(normalised, float32), their squared norms and ``s``, the running max similarity of each row
to the chosen set: the same reference similarities (:func:`enrich.similarity.cosine_at`) as
the in-process kernel, so the same bits on every CPU. The driver keeps the order and, per
round, a few thousand candidates; never an N-vector.

**Lazy batching, exact.** Each round every shard returns its ``B`` smallest ``(s, index)``
keys among the rows not chosen yet, with their vectors, plus its smallest key outside those
(``next``). The driver runs the greedy on the union of candidates, raising their ``s`` with
the reference cosine to each new pick, and may keep picking while the best candidate's key is
lexicographically below ``min(next)`` over the shards: a non-candidate's ``s`` can only grow,
so its key stays at or above that bound, and the pick is the global argmin, ties to the lowest
index, exactly as in-process. Then the batch of new picks goes to every shard, which raises its
``s`` (float32 products rule rows out within :func:`~enrich.similarity.float32_error`; the
reference decides the rest) and marks its own picks chosen. The first pick of a round is
always valid (the global argmin is some shard's first candidate), so a round never stalls.

**A worker that dies** takes its actor with it. The driver notices (the call fails), loads
that shard again on a live worker and rebuilds its ``s`` from the chosen set so far (``s`` is
the max over the chosen set, whatever order the picks are applied in), then carries on: the
order is the same. After :data:`MAX_RECOVERIES` losses it stops with a one-line error.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError
from enrich.similarity import cosine_at, float32_error, normalize_rows, row_sqnorms

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["MAX_RECOVERIES", "Shard", "rank_sharded"]

_INF = np.inf
_NO_KEY = (np.inf, np.iinfo(np.int64).max)
# Lost workers tolerated in one ranking before giving up.
MAX_RECOVERIES = 5
# Chosen rows sent to a rebuilt shard per message.
_RESTORE_CHUNK = 8192


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def _raise_ext(
    V: np.ndarray,
    Xs: np.ndarray,
    sq: np.ndarray,
    r0: int,
    P: np.ndarray,
    psq: np.ndarray,
    s: np.ndarray,
    err: float,
) -> None:  # pragma: no cover - jitted
    """``s[r0 + r] = max(s[r0 + r], max_c cosine_at(Xs[r0 + r], P[c]))`` given the float32
    products ``V[r, c]`` (error <= err), as ``_greedy._raise_block`` but with the picks in
    their own matrix: only entries within 2 err of the row's float32 maximum and within err of
    its ``s`` can matter, and only they are recomputed. Chosen rows (+inf) stay."""
    for r in range(V.shape[0]):
        i = r0 + r
        si = s[i]
        if si == _INF:
            continue
        m = -_INF
        for c in range(V.shape[1]):
            m = max(m, V[r, c])
        lo = max(si - err, m - 2.0 * err)
        if m < lo:
            continue
        for c in range(V.shape[1]):
            if V[r, c] >= lo:
                v = cosine_at(Xs, sq, i, P, psq, c)
                if v > si:
                    si = v
        s[i] = si


def _smallest(s: np.ndarray, b: int) -> tuple[np.ndarray, tuple[float, int]]:
    """Local indices of the `b` smallest ``(s, index)`` keys among finite `s` (sorted by
    index), and the smallest key left out (``(inf, max int)`` if none)."""
    m = len(s)
    if b < m:
        part = np.argpartition(s, b)[: b + 1]  # the b + 1 smallest values
        v = float(s[part].max())
        if v != _INF:
            lt = np.flatnonzero(s < v)  # at most b of them
            eq = np.flatnonzero(s == v)  # ascending; at least b + 1 - len(lt)
            need = b - len(lt)
            return np.sort(np.concatenate([lt, eq[:need]])), (v, int(eq[need]))
    return np.flatnonzero(s < _INF), _NO_KEY


class Shard:
    """A Dask actor: one shard of rows ``[start, stop)`` and their running ``s``.

    Parameters
    ----------
    rows : ndarray of shape (stop - start, n_dims), or an array-like to slice
        The shard's rows; or the whole (lazy, e.g. Zarr) array, then the worker reads its
        own rows ``source[start:stop]``.
    start, stop : int
        The shard's global row range.
    """

    def __init__(self, rows: Any, start: int, stop: int) -> None:
        if not isinstance(rows, np.ndarray) or len(rows) != stop - start:
            rows = check_vectors(
                np.asarray(rows[start:stop]), name=f"embedding rows {start}..{stop - 1}"
            )
        self.start = start
        self.X = normalize_rows(rows)  # (m, d) float32 unit rows, as in-process
        self.sq = row_sqnorms(self.X)  # (m,) float64
        self.s = np.full(len(self.X), -_INF)
        self.err = float32_error(self.X.shape[1])

    def rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised rows and squared norms of these global indices (all in this shard)."""
        local = np.asarray(index, dtype=np.int64) - self.start
        return self.X[local], self.sq[local]

    def apply(self, P: np.ndarray, psq: np.ndarray, index: np.ndarray) -> None:
        """Raise ``s`` with the chosen rows `P` (global indices `index`); mark this shard's
        own chosen rows."""
        if len(P) == 0:
            return
        Pt = np.ascontiguousarray(P.T)  # (d, b)
        block = max(256, (1 << 22) // max(1, len(P)))  # V below stays ~16 MiB
        for r in range(0, len(self.X), block):
            V = self.X[r : r + block] @ Pt  # (rows, b) float32
            _raise_ext(V, self.X, self.sq, r, P, psq, self.s, self.err)
        local = np.asarray(index, dtype=np.int64) - self.start
        mine = local[(local >= 0) & (local < len(self.s))]
        self.s[mine] = _INF

    def step(
        self, P: np.ndarray, psq: np.ndarray, index: np.ndarray, b: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[float, int]]:
        """Apply a batch of picks, then return this shard's candidates: global indices,
        vectors, squared norms and ``s`` of its `b` smallest keys, and its smallest key left
        out (global index)."""
        self.apply(P, psq, index)
        local, (v, j) = _smallest(self.s, b)
        nxt = (v, j + self.start) if v != _INF else _NO_KEY
        return local + self.start, self.X[local], self.sq[local], self.s[local], nxt

    def memory(self) -> int:
        """Bytes of this shard's arrays."""
        return int(self.X.nbytes + self.sq.nbytes + self.s.nbytes)


# --------------------------------------------------------------------------- driver
def _lost(exc: BaseException) -> bool:
    """Does this exception mean the worker (and its actor) is gone?"""
    from distributed.comm.core import CommClosedError

    text = str(exc)
    return isinstance(exc, (CommClosedError, OSError)) or (
        isinstance(exc, RuntimeError) and "lost" in text.lower()
    )


class _Failed:
    """A call that failed before it was sent; ``result()`` raises its exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self) -> Any:
        raise self.exc


class _Shards:
    """The driver's handle on the shard actors: placement, calls, and rebuilding lost ones."""

    def __init__(self, client: Client, X: Any, bounds: list[tuple[int, int]]) -> None:
        self.client = client
        self.X = X
        self.bounds = bounds
        self.starts = np.array([a for a, _ in bounds], dtype=np.int64)
        self.actors: list[Any] = [None] * len(bounds)
        self.futures: list[Any] = [None] * len(bounds)  # an actor lives while its future does
        self.recoveries = 0
        self.chosen: list[np.ndarray] = []  # the order so far, in pieces
        for i in range(len(bounds)):
            try:
                self._make(i)
            except Exception as exc:
                if not _lost(exc):
                    raise
                self.rebuild([i])

    def _live_workers(self) -> list[str]:
        return sorted(self.client.scheduler_info()["workers"])

    def _make(self, i: int) -> None:
        workers = self._live_workers()
        if not workers:
            self.client.wait_for_workers(1, timeout=60)
            workers = self._live_workers()
        where = [workers[i % len(workers)]]
        a, b = self.bounds[i]
        if isinstance(self.X, np.ndarray):
            [rows] = self.client.scatter([self.X[a:b]], workers=where, hash=False)
        else:
            rows = self.X  # a lazy array: the worker reads its own rows
        future = self.client.submit(
            Shard, rows, a, b, actor=True, workers=where, allow_other_workers=True, pure=False
        )
        self.actors[i] = future.result()
        self.futures[i] = future
        del rows  # the shard holds its normalised copy; the scattered rows can go

    def close(self) -> None:
        """Release the actors (and with them the shards' memory on the workers)."""
        for f in self.futures:
            if f is not None:
                f.release()
        self.actors = [None] * len(self.actors)
        self.futures = [None] * len(self.futures)

    def owner(self, index: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, index, side="right") - 1

    def rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised rows of these global indices, in this order, from their shards."""
        index = np.asarray(index, dtype=np.int64)
        V = np.empty((len(index), self.X.shape[1]), dtype=np.float32)
        sq = np.empty(len(index))
        own = self.owner(index)
        todo = np.unique(own).tolist()
        while todo:
            calls = {w: self._ask(w, "rows", index[own == w]) for w in todo}
            failed = []
            for w, call in calls.items():
                try:
                    V[own == w], sq[own == w] = call.result()
                except Exception as exc:
                    if not _lost(exc):
                        raise
                    failed.append(w)
            if failed:
                self.rebuild(failed)
            todo = failed
        return V, sq

    def _ask(self, i: int, method: str, *args: Any) -> Any:
        """Call `method` on shard i's actor: an actor future, or the exception when the
        call cannot even be sent (its worker is known to be gone)."""
        try:
            return getattr(self.actors[i], method)(*args)
        except Exception as exc:
            return _Failed(exc)

    def call(self, method: str, *args: Any) -> list[Any]:
        """`method(*args)` on every shard; a lost shard is rebuilt (with everything chosen
        so far, which includes the picks in `args`) and asked again."""
        todo = list(range(len(self.actors)))
        out: list[Any] = [None] * len(self.actors)
        while todo:
            calls = {i: self._ask(i, method, *args) for i in todo}
            failed = []
            for i, call in calls.items():
                try:
                    out[i] = call.result()
                except Exception as exc:
                    if not _lost(exc):
                        raise
                    failed.append(i)
            if failed:
                self.rebuild(failed)
                if method == "apply":  # a rebuilt shard already holds every chosen row
                    failed = []
            todo = failed
        return out

    def rebuild(self, lost: list[int]) -> None:
        """Load lost shards again and restore their ``s`` from the chosen set so far."""
        while True:
            self.recoveries += len(lost)
            if self.recoveries > MAX_RECOVERIES:
                raise EnrichError(
                    f"sharded ranking lost Dask workers {self.recoveries} times "
                    f"(more than {MAX_RECOVERIES}); is the cluster healthy? nothing was written"
                )
            try:
                for i in lost:
                    self._make(i)
                chosen = np.concatenate(self.chosen) if self.chosen else np.empty(0, np.int64)
                for a in range(0, len(chosen), _RESTORE_CHUNK):
                    idx = chosen[a : a + _RESTORE_CHUNK]
                    P, psq = self.rows(idx)
                    for call in [self._ask(i, "apply", P, psq, idx) for i in lost]:
                        call.result()
                return
            except Exception as exc:
                if not _lost(exc):
                    raise
                # another worker went during the rebuild: rebuild every shard whose actor
                # no longer answers
                lost = sorted(set(lost) | set(self._unreachable()))

    def _unreachable(self) -> list[int]:
        bad = []
        for i in range(len(self.actors)):
            if self.actors[i] is None:  # not made yet
                continue
            try:
                self._ask(i, "memory").result()
            except Exception as exc:
                if not _lost(exc):
                    raise
                bad.append(i)
        return bad


def _pick_round(
    idx: np.ndarray,
    V: np.ndarray,
    sq: np.ndarray,
    s: np.ndarray,
    bound: tuple[float, int],
    n_max: int,
    err: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy picks among the candidates (global indices `idx`, ascending) while the best
    key is below `bound`; at most `n_max`. Returns candidate positions and their ``s``."""
    from enrich.select._greedy import _raise_one

    picks: list[int] = []
    sims: list[float] = []
    while len(picks) < n_max:
        j = int(np.argmin(s))  # idx ascending: the first hit is the lowest index
        if s[j] == _INF or (float(s[j]), int(idx[j])) >= bound:
            break
        picks.append(j)
        sims.append(float(s[j]))
        _raise_one(V @ V[j], V, sq, j, s, err)  # (c,) float32 products; s[j] -> +inf
    return np.asarray(picks, dtype=np.int64), np.asarray(sims, dtype=np.float64)


def rank_sharded(
    X: Any,
    client: Client,
    init: np.ndarray,
    k: int,
    *,
    n_shards: int,
    candidates: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """`k` exact greedy picks after the seed set `init`, rows kept on the workers.

    Parameters
    ----------
    X : ndarray of shape (n_images, n_dims), or a lazy array (e.g. ``zarr.Array``)
        A numpy array is validated by the caller and scattered shard by shard; a lazy array
        is read by the workers, each its own rows.
    init : ndarray of shape (n_initial,), int64
        The seed set (validated).
    k : int
        Picks after it.
    n_shards : int
        Row shards (contiguous ranges), spread over the workers.
    candidates : int
        Candidates per shard per round (``B``).

    Returns
    -------
    picks : ndarray of shape (k,), int64
    max_similarity : ndarray of shape (k,), float64
    info : dict
        Rounds, shards, candidates, recoveries and seconds.
    """
    n = int(X.shape[0])
    n_shards = max(1, min(n_shards, n))
    edges = np.linspace(0, n, n_shards + 1).round().astype(np.int64)
    bounds = [(int(a), int(b)) for a, b in itertools.pairwise(edges.tolist()) if b > a]
    t0 = time.perf_counter()
    shards = _Shards(client, X, bounds)
    d = int(X.shape[1])
    init = np.asarray(init, dtype=np.int64)
    try:
        picks, sims, rounds = _run(shards, init, k, d, candidates, progress)
    finally:
        shards.close()
    info = {
        "rounds": rounds,
        "n_shards": len(bounds),
        "candidates_per_shard": candidates,
        "recovered_shards": shards.recoveries,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return picks, sims, info


def _run(
    shards: _Shards,
    init: np.ndarray,
    k: int,
    d: int,
    candidates: int,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    err = float32_error(d)
    # the seed set, in chunks: every shard raises s with it and marks its own seeds
    for a in range(0, len(init), _RESTORE_CHUNK):
        idx = init[a : a + _RESTORE_CHUNK]
        P, psq = shards.rows(idx)
        shards.chosen.append(idx)
        shards.call("apply", P, psq, idx)
    picks = np.empty(k, dtype=np.int64)
    sims = np.empty(k, dtype=np.float64)
    made = 0
    rounds = 0
    P = np.empty((0, d), dtype=np.float32)
    psq = np.empty(0)
    pidx = np.empty(0, dtype=np.int64)
    while made < k:
        parts = shards.call("step", P, psq, pidx, candidates)
        rounds += 1
        idx = np.concatenate([p[0] for p in parts])
        order = np.argsort(idx, kind="stable")  # shards are disjoint: indices distinct
        idx = idx[order]
        V = np.ascontiguousarray(np.concatenate([p[1] for p in parts])[order])  # (c, d)
        csq = np.concatenate([p[2] for p in parts])[order]
        cs = np.concatenate([p[3] for p in parts])[order].copy()
        bound = min((float(p[4][0]), int(p[4][1])) for p in parts)
        if len(idx) == 0:
            raise EnrichError(f"no image left to pick after {made} of {k} picks")
        pos, psims = _pick_round(idx, V, csq, cs, bound, k - made, err)
        picks[made : made + len(pos)] = idx[pos]
        sims[made : made + len(pos)] = psims
        made += len(pos)
        P, psq, pidx = V[pos], csq[pos], idx[pos]
        shards.chosen.append(pidx)
        if progress is not None:
            progress(len(pos))
    return picks, sims, rounds
