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
``s`` and marks its own picks chosen. A shard of 4,096 rows or more is grouped around pivots
as in-process, and the angle bounds of :mod:`enrich.select._greedy` skip the groups and rows a
pick cannot raise; where they stop paying, a float32 GEMM rules rows out within
:func:`~enrich.similarity.float32_error` and the reference decides the rest. The first pick
of a round is always valid (the global argmin is some shard's first candidate), so a round
never stalls.

**A worker that dies** takes its actor with it. The driver notices (the call fails), loads
that shard again on a live worker and rebuilds its ``s`` from the chosen set so far (``s`` is
the max over the chosen set, whatever order the picks are applied in), then carries on: the
order is the same. After :data:`MAX_RECOVERIES` losses it stops with a one-line error.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from enrich.embeddings import check_vectors
from enrich.errors import EnrichError
from enrich.select._greedy import (
    _MARGIN,
    _MIN_PRUNED_N,
    _build_groups,
    _dot64,
    _finish_groups,
    _float64_error,
    _n_groups_for,
    _refresh_all,
    _refresh_group,
)
from enrich.similarity import cosine_at, float32_error, normalize_rows, row_sqnorms

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["MAX_RECOVERIES", "PIECE_ROWS", "Shard", "rank_sharded"]

_INF = np.inf
_NO_KEY = (np.inf, np.iinfo(np.int64).max)
# Rows per message when a shard is sent to its worker (or read by it): 16 MiB at d = 128.
PIECE_ROWS = 32768
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


@numba.njit(cache=True, nogil=True)
def _apply_pruned(
    Xp: np.ndarray,
    perm: np.ndarray,
    gstart: np.ndarray,
    centers: np.ndarray,
    radius: np.ndarray,
    rowang: np.ndarray,
    rowcos: np.ndarray,
    rowsin: np.ndarray,
    sq: np.ndarray,
    inv_norm: np.ndarray,
    err64: float,
    s: np.ndarray,
    gmin: np.ndarray,
    gthr: np.ndarray,
    tval: np.ndarray,
    tkey: np.ndarray,
    tpos: np.ndarray,
    T: int,
    P: np.ndarray,
    psq: np.ndarray,
) -> int:  # pragma: no cover - jitted
    """Raise ``s`` with the picks `P` (rows from any shard), skipping the groups and rows
    that provably cannot gain: the angle bounds of ``_greedy._pruned_run``, with the pick's
    own centre angle (it may belong to another shard, so no centre-centre shortcut).
    Returns the dot products computed (how well pruning pays)."""
    G = gstart.shape[0] - 1
    d = Xp.shape[1]
    x = np.empty(d, dtype=np.float64)
    touched = 0
    for c in range(P.shape[0]):
        for k in range(d):
            x[k] = np.float64(P[c, k])
        inv_p = 1.0 / np.sqrt(psq[c])
        for g in range(G):
            thr = gthr[g]
            if thr < -5.0:
                continue
            cg = min(1.0, max(-1.0, _dot64(centers, g, x)))
            ang = math.acos(cg)
            if ang - radius[g] >= thr:
                continue
            sa = math.sqrt(max(0.0, 1.0 - cg * cg))
            changed = False
            for i in range(gstart[g], gstart[g + 1]):
                si = s[i]
                if si == _INF:
                    continue
                if ang > rowang[i]:
                    ub = cg * rowcos[i] + sa * rowsin[i]
                    if ub + _MARGIN <= si:
                        continue
                v = _dot64(Xp, i, x) * inv_p * inv_norm[i]
                touched += 1
                if v > si - err64:
                    cv = cosine_at(Xp, sq, i, P, psq, c)
                    if cv > si:
                        s[i] = cv
                        changed = True
            if changed:
                _refresh_group(s, gstart, perm, gmin, gthr, tval, tkey, tpos, T, g)
    return touched


@numba.njit(cache=True, nogil=True)
def _permute_rows(X: np.ndarray, perm: np.ndarray) -> None:  # pragma: no cover - jitted
    """``X[:] = X[perm]`` in place, one cycle of the permutation at a time (one spare row)."""
    n = perm.shape[0]
    done = np.zeros(n, dtype=np.bool_)
    tmp = np.empty(X.shape[1], dtype=X.dtype)
    for start in range(n):
        if done[start]:
            continue
        done[start] = True
        if perm[start] == start:
            continue
        tmp[:] = X[start]
        i = start
        while True:
            j = perm[i]
            if j == start:
                X[i] = tmp
                break
            X[i] = X[j]
            done[j] = True
            i = j


class Shard:
    """A Dask actor: one shard of rows ``[start, stop)`` and their running ``s``.

    The rows are kept grouped around pivots as in-process (``_greedy._build_groups``), so a
    batch of picks skips, with the same exact angle bounds, the groups and rows that cannot
    gain; where that stops paying (most rows touched) a batch goes through one float32 GEMM
    instead, and pruning is tried again later. Either way ``s`` holds the same reference
    values.

    The rows arrive in pieces of about 16 MiB (:meth:`put`, then :meth:`build`), or the
    worker reads them itself from a lazy array, block by block; either way they are held once,
    in one buffer that is then grouped and normalised in place (one large message would be
    held twice while it is decoded).

    Parameters
    ----------
    source : array-like or StoreRows, optional
        A lazy (e.g. Zarr) array of all the rows, or an embeddings store
        (:class:`enrich.distributed._rows.StoreRows`, whose bad rows are named by their ids):
        the worker reads its own, ``source[start:stop]``, and builds the shard at once.
        None: the rows come through :meth:`put`.
    start, stop : int
        The shard's global row range.
    n_dims : int
    prune_from : int
        Group the rows (and prune) only from this many rows on.
    piece_rows : int
        Rows per piece read or received.
    """

    def __init__(
        self,
        source: Any,
        start: int,
        stop: int,
        n_dims: int,
        prune_from: int = _MIN_PRUNED_N,
        piece_rows: int = PIECE_ROWS,
    ) -> None:
        self.start = start
        self.prune_from = prune_from
        self.piece_rows = piece_rows
        self.raw = np.empty((stop - start, n_dims), dtype=np.float32)
        if source is not None:
            from enrich.distributed._rows import StoreRows, read_checked

            a = start
            while a < stop:
                b = min(stop, a + piece_rows)
                b = stop if stop - b == 1 else b  # no 1-row piece (unless the shard is one row)
                if isinstance(source, StoreRows):  # checked here, bad rows named by their ids
                    self.put(a, read_checked(source, a, b))
                    a = b
                    continue
                block = np.asarray(source[a:b])
                twice = np.concatenate([block, block]) if b - a == 1 else block  # N >= 2 check
                ids = np.arange(a, a + len(twice)) if b - a > 1 else np.array([a, a])
                valid = check_vectors(twice, ids=ids, name="embeddings")
                self.put(a, valid[: b - a])
                a = b
            self.build()

    def put(self, offset: int, rows: np.ndarray) -> None:
        """Copy rows (validated float32) starting at global index `offset` into the shard."""
        self.raw[offset - self.start : offset - self.start + len(rows)] = rows

    def build(self) -> None:
        """Group the rows around pivots and normalise them, in place; ``s`` starts at -inf."""
        rows = self.raw
        del self.raw
        m = len(rows)
        prune_from = self.prune_from
        grp = _build_groups(rows, _n_groups_for(m), check=True) if m >= prune_from else None
        self.perm = grp.perm if grp is not None else np.arange(m, dtype=np.int64)
        self.inv = np.empty(m, dtype=np.int64)  # local index -> position in X
        self.inv[self.perm] = np.arange(m)
        if grp is not None:
            _permute_rows(rows, self.perm)
        # (m, d) float32 unit rows, grouped: the same bits as normalize_rows(rows, rows=perm)
        self.X = normalize_rows(rows, out=rows, block=self.piece_rows)
        self.sq = row_sqnorms(self.X)  # (m,) float64
        self.s = np.full(m, -_INF)  # in the grouped order of X
        self.err = float32_error(self.X.shape[1])
        self.grp = grp
        self.batches = {"pruned": 0, "dense": 0}
        self.wait = 0  # batches to go through the GEMM before pruning is tried again
        self.backoff = 1
        if grp is not None:
            self.inv_norm = 1.0 / np.sqrt(self.sq)
            _finish_groups(grp, self.X)
            G = len(grp.centers)
            T = 1
            while T < G:
                T *= 2
            self.T = T
            self.tree = (np.full(2 * T, _INF), np.zeros(2 * T, np.int64), np.zeros(2 * T, np.int64))
            self.gmin = np.full(G, -_INF)
            self.gthr = np.full(G, math.pi)

    def rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised rows and squared norms of these global indices (all in this shard)."""
        at = self.inv[np.asarray(index, dtype=np.int64) - self.start]
        return self.X[at], self.sq[at]

    def _refresh(self) -> None:
        if self.grp is not None:
            _refresh_all(
                self.s, self.grp.gstart, self.perm, self.gmin, self.gthr, *self.tree, self.T
            )

    def apply(self, P: np.ndarray, psq: np.ndarray, index: np.ndarray) -> None:
        """Raise ``s`` with the chosen rows `P` (global indices `index`); mark this shard's
        own chosen rows."""
        if len(P) == 0:
            return
        P = np.ascontiguousarray(P, dtype=np.float32)
        informed = bool(np.isfinite(self.s).any()) or not len(self.s)
        if self.grp is not None and informed and self.wait == 0:
            g = self.grp
            touched = _apply_pruned(
                self.X, self.perm, g.gstart, g.centers, g.radius, g.rowang, g.rowcos, g.rowsin,
                self.sq, self.inv_norm, _float64_error(self.X.shape[1]), self.s, self.gmin,
                self.gthr, *self.tree, self.T, P, psq,
            )  # fmt: skip
            self.batches["pruned"] += 1
            if touched > 0.25 * len(self.s) * len(P):  # pruning does not pay here now
                self.wait, self.backoff = self.backoff, 2 * self.backoff
        else:
            self.wait = max(0, self.wait - 1)
            self.batches["dense"] += 1
            Pt = np.ascontiguousarray(P.T)  # (d, b)
            block = max(256, (1 << 22) // max(1, len(P)))  # V below stays ~16 MiB
            for r in range(0, len(self.X), block):
                V = self.X[r : r + block] @ Pt  # (rows, b) float32
                _raise_ext(V, self.X, self.sq, r, P, psq, self.s, self.err)
        local = np.asarray(index, dtype=np.int64) - self.start
        mine = local[(local >= 0) & (local < len(self.s))]
        self.s[self.inv[mine]] = _INF
        self._refresh()

    def step(
        self, P: np.ndarray, psq: np.ndarray, index: np.ndarray, b: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[float, int]]:
        """Apply a batch of picks, then return this shard's candidates: global indices,
        vectors, squared norms and ``s`` of its `b` smallest keys, and its smallest key left
        out (global index)."""
        self.apply(P, psq, index)
        local, (v, j) = _smallest(self.s[self.inv], b)  # s in index order: ties to the lowest
        nxt = (v, j + self.start) if v != _INF else _NO_KEY
        at = self.inv[local]
        return local + self.start, self.X[at], self.sq[at], self.s[at], nxt

    def memory(self) -> int:
        """Bytes of this shard's arrays."""
        return int(self.X.nbytes + self.sq.nbytes + self.s.nbytes)

    def stats(self) -> dict[str, int]:
        """Batches applied by pruning and by GEMM, and the bytes held."""
        return {**self.batches, "bytes": self.memory()}


# --------------------------------------------------------------------------- driver
def _lost(exc: BaseException) -> bool:
    """Does this exception mean a worker (and with it an actor or its input) is gone?"""
    import concurrent.futures

    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    if isinstance(exc, (CommClosedError, OSError, KilledWorker, concurrent.futures.CancelledError)):
        return True
    return isinstance(exc, RuntimeError) and "lost" in str(exc).lower()


class _Failed:
    """A call that failed before it was sent; ``result()`` raises its exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self) -> Any:
        raise self.exc


class _Shards:
    """The driver's handle on the shard actors: placement, calls, and rebuilding lost ones."""

    def __init__(
        self,
        client: Client,
        X: Any,
        bounds: list[tuple[int, int]],
        prune_from: int,
        piece_rows: int = PIECE_ROWS,
    ) -> None:
        self.client = client
        self.prune_from = prune_from
        self.piece_rows = piece_rows
        self.X = X
        self.bounds = bounds
        self.starts = np.array([a for a, _ in bounds], dtype=np.int64)
        self.actors: list[Any] = [None] * len(bounds)
        self.futures: list[Any] = [None] * len(bounds)  # an actor lives while its future does
        self.where: list[str | None] = [None] * len(bounds)  # each actor's worker
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
        pushed = isinstance(self.X, np.ndarray)  # else a lazy array: the worker reads its rows
        future = self.client.submit(
            Shard,
            None if pushed else self.X,
            a,
            b,
            int(self.X.shape[1]),
            self.prune_from,
            self.piece_rows,
            actor=True,
            workers=where,
            allow_other_workers=True,
            pure=False,
        )
        actor: Any = future.result()  # a proxy: its calls return futures
        if pushed:
            # piece by piece, two in flight: the worker never decodes the whole shard at once
            pending: list[Any] = []
            for r in range(a, b, self.piece_rows):
                pending.append(actor.put(r, self.X[r : min(b, r + self.piece_rows)]))
                if len(pending) == 2:
                    pending.pop(0).result()
            for call in pending:
                call.result()
            actor.build().result()
        self.actors[i] = actor
        self.futures[i] = future
        self.where[i] = where[0]

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
            self._forget({self.where[i] for i in lost} - {None})
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

    def _forget(self, dead: set[str | None], timeout: float = 30.0) -> None:
        """Wait (a while) until the scheduler has noticed that these workers are gone, so
        that a rebuilt shard is not placed on one of them again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and dead & set(self._live_workers()):
            time.sleep(0.1)

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


@numba.njit(cache=True, nogil=True)
def _pick_loop(
    idx: np.ndarray,
    V: np.ndarray,
    sq: np.ndarray,
    s: np.ndarray,
    bound_s: float,
    bound_i: int,
    n_max: int,
    err64: float,
    out_pos: np.ndarray,
    out_sim: np.ndarray,
) -> int:  # pragma: no cover - jitted
    """Greedy picks among the candidates (global indices `idx`, ascending) while the best
    ``(s, idx)`` key is below ``(bound_s, bound_i)``; at most `n_max`. Writes candidate
    positions and their ``s`` to `out_pos`/`out_sim` and returns how many.

    A candidate whose key reaches the bound can no longer be picked this round (``s`` only
    grows) and is dropped. A fast float64 product (reassociated, error <= err64) rules a row
    out; the reference :func:`cosine_at` decides the rest, as in ``_greedy._pruned_run``.
    """
    c = idx.shape[0]
    d = V.shape[1]
    live = np.empty(c, dtype=np.int64)
    n_live = 0
    for i in range(c):
        if s[i] < bound_s or (s[i] == bound_s and idx[i] < bound_i):
            live[n_live] = i
            n_live += 1
    inv = 1.0 / np.sqrt(sq)
    x = np.empty(d, dtype=np.float64)
    made = 0
    while made < n_max and n_live > 0:
        # the smallest key among the live ones (live stays sorted by index: first hit wins)
        best = 0
        for t in range(1, n_live):
            if s[live[t]] < s[live[best]]:
                best = t
        j = live[best]
        out_pos[made] = j
        out_sim[made] = s[j]
        made += 1
        for k in range(d):
            x[k] = np.float64(V[j, k])
        keep = 0
        for t in range(n_live):
            i = live[t]
            if i == j:
                continue
            si = s[i]
            v = _dot64(V, i, x) * inv[j] * inv[i]
            if v > si - err64:
                cv = cosine_at(V, sq, i, V, sq, j)
                if cv > si:
                    si = cv
                    s[i] = si
            if si < bound_s or (si == bound_s and idx[i] < bound_i):
                live[keep] = i
                keep += 1
        n_live = keep
        s[j] = _INF
    return made


def rank_sharded(
    X: Any,
    client: Client,
    init: np.ndarray,
    k: int,
    *,
    n_shards: int,
    candidates: int = 4096,
    progress: Callable[[int], None] | None = None,
    prune_from: int = _MIN_PRUNED_N,
    piece_rows: int = PIECE_ROWS,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """`k` exact greedy picks after the seed set `init`, rows kept on the workers.

    Parameters
    ----------
    X : ndarray of shape (n_images, n_dims), or a lazy array (e.g. ``zarr.Array``, or a
        :class:`~enrich.distributed._rows.StoreRows`)
        A numpy array is validated by the caller and scattered shard by shard; a lazy array
        is read (and validated) by the workers, each its own rows.
    init : ndarray of shape (n_initial,), int64
        The seed set (validated).
    k : int
        Picks after it.
    n_shards : int
        Row shards (contiguous ranges), spread over the workers.
    candidates : int
        Candidates per shard per round (``B``).
    prune_from : int
        Shards of at least this many rows are grouped for pruning (tests lower it).
    piece_rows : int
        Rows per message sending a shard to its worker, or per read of a lazy array.

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
    shards = _Shards(client, X, bounds, prune_from, piece_rows)
    d = int(X.shape[1])
    init = np.asarray(init, dtype=np.int64)
    timing = {"driver": 0.0, "workers": 0.0}
    try:
        picks, sims, rounds = _run(shards, init, k, d, candidates, progress, timing)
        stats = shards.call("stats")
    finally:
        shards.close()
    info = {
        "rounds": rounds,
        "n_shards": len(bounds),
        "candidates_per_shard": candidates,
        "recovered_shards": shards.recoveries,
        "batches_pruned": sum(s["pruned"] for s in stats),
        "batches_dense": sum(s["dense"] for s in stats),
        "shard_bytes": max(s["bytes"] for s in stats),
        "seconds": round(time.perf_counter() - t0, 3),
        # driver: the greedy on the candidates; workers: waiting for the rounds' steps
        "driver_seconds": round(timing["driver"], 3),
        "round_seconds": round(timing["workers"], 3),
    }
    return picks, sims, info


def _run(
    shards: _Shards,
    init: np.ndarray,
    k: int,
    d: int,
    candidates: int,
    progress: Callable[[int], None] | None,
    timing: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, int]:
    err64 = _float64_error(d)
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
        t_call = time.perf_counter()
        parts = shards.call("step", P, psq, pidx, candidates)
        timing["workers"] += time.perf_counter() - t_call
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
        t_pick = time.perf_counter()
        pos = np.empty(min(len(idx), k - made), dtype=np.int64)
        psims = np.empty(len(pos))
        got = _pick_loop(idx, V, csq, cs, bound[0], bound[1], len(pos), err64, pos, psims)
        pos, psims = pos[:got], psims[:got]
        timing["driver"] += time.perf_counter() - t_pick
        picks[made : made + len(pos)] = idx[pos]
        sims[made : made + len(pos)] = psims
        made += len(pos)
        P, psq, pidx = V[pos], csq[pos], idx[pos]
        shards.chosen.append(pidx)
        if progress is not None:
            progress(len(pos))
    return picks, sims, rounds
