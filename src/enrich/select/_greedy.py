"""The exact ENRICH greedy core: max-min selection without an N x N matrix.

The rule (Chinn et al. 2023, "Ranking algorithm"): keep ``s[i]``, the maximum cosine
similarity of image *i* to the chosen set; repeatedly pick the remaining image with the
smallest ``s`` (ties to the lowest index) and raise ``s`` with the new pick's similarities.

The straightforward implementation touches all N rows per pick (one ``X @ x`` each). Here
rows are grouped around pivots, and angle bounds skip the work that provably cannot change
``s``. For group *g* with unit centre ``c_g`` and angular radius ``r_g``, and a new pick *x*,
every member *i* satisfies ``angle(x, x_i) >= angle(x, c_g) - r_g``. If the cosine of that
bound is no larger than the group's smallest ``s``, no member can gain, and the whole group is
skipped; the same test per row (with its own angle to the centre) skips most remaining dot
products. Skips are exact, with a 1e-6 safety margin for float rounding, so the order is the
greedy order. A tournament tree over the group minima gives the next pick in O(log G).

``s`` holds reference similarities (:func:`enrich.similarity.cosine_at`: float64, one fixed
order of operations, the same bits on every CPU). Fast products (vectorised float64 here,
float32 BLAS on the dense path) only rule rows out, with a proven error bound; a row whose
fast value comes within that bound of its ``s`` is recomputed with the reference. So ``s``,
and with it every comparison and every tie (to the lowest index), is the same on any CPU.

On data where the bounds cannot prune (e.g. isotropic Gaussian embeddings, where all angles
are near 90 degrees), the kernel notices within a few dozen picks and hands over to the dense
path (one BLAS ``X_remaining @ x`` per pick, re-packing the remaining rows as they shrink),
trying the pruned path again later with exponential back-off; a geometry check on a sample
skips the pruned path entirely when no pair of groups is separable. Both paths share the same
``s``, so switching is exact.

Prior validation of data is assumed in this module: ``X`` is finite with non-zero rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from enrich.similarity import cosine_at, float32_error, normalize_rows, row_sqnorms

__all__ = ["GreedyState", "greedy_order"]

_INF = np.inf
# Safety margin on every skip test (cosine units); covers float32 storage and norm rounding.
_MARGIN = 1e-6
# Below this share of separable group pairs the pruned path is not even tried.
_MIN_SEPARABLE = 0.02
# Below this N the dense path alone is fastest.
_MIN_PRUNED_N = 4096


def _float64_error(n_dims: int) -> float:
    """Bound on |_dot64 (reassociated) - dot_fixed| for float32 unit rows: two float64 sums of
    the same exact products in different orders, each within d·2^-53 of the exact sum."""
    return 4.0 * (n_dims + 4) * 2.0**-53


# --------------------------------------------------------------------------- numba kernels
# Reassociation only (no NaN/inf assumptions): lets LLVM vectorise the float64 sum; the
# result differs from the sequential sum by ~1e-16, far inside the 1e-6 margin.
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot64(Xp: np.ndarray, i: int, x: np.ndarray) -> float:  # pragma: no cover - jitted
    acc = 0.0
    for k in range(x.shape[0]):
        acc += np.float64(Xp[i, k]) * x[k]
    return acc


@numba.njit(cache=True, nogil=True)
def _group_min(
    s: np.ndarray, gstart: np.ndarray, g: int
) -> tuple[float, int]:  # pragma: no cover - jitted
    # members are sorted by original index, so strict '<' keeps the lowest index on ties
    best = _INF
    arg = -1
    for i in range(gstart[g], gstart[g + 1]):
        if s[i] < best:
            best = s[i]
            arg = i
    return best, arg


@numba.njit(cache=True, nogil=True)
def _tree_set(
    tval: np.ndarray,
    tkey: np.ndarray,
    tpos: np.ndarray,
    P: int,
    g: int,
    val: float,
    key: int,
    pos: int,
) -> None:  # pragma: no cover - jitted
    i = P + g
    tval[i] = val
    tkey[i] = key
    tpos[i] = pos
    i //= 2
    while i >= 1:
        a = 2 * i
        b = a + 1
        if tval[b] < tval[a] or (tval[b] == tval[a] and tkey[b] < tkey[a]):
            a = b
        tval[i] = tval[a]
        tkey[i] = tkey[a]
        tpos[i] = tpos[a]
        i //= 2


@numba.njit(cache=True, nogil=True)
def _refresh_group(
    s: np.ndarray,
    gstart: np.ndarray,
    orig: np.ndarray,
    gmin: np.ndarray,
    gthr: np.ndarray,
    tval: np.ndarray,
    tkey: np.ndarray,
    tpos: np.ndarray,
    P: int,
    g: int,
) -> None:  # pragma: no cover - jitted
    best, arg = _group_min(s, gstart, g)
    gmin[g] = best
    if best == _INF:
        gthr[g] = -10.0  # empty: every test skips it
        _tree_set(tval, tkey, tpos, P, g, _INF, np.iinfo(np.int64).max, -1)
    else:
        c = best - 1e-6
        c = min(1.0, max(-1.0, c))
        gthr[g] = math.acos(c)
        _tree_set(tval, tkey, tpos, P, g, best, orig[arg], arg)


@numba.njit(cache=True, nogil=True)
def _pruned_run(
    Xp: np.ndarray,
    orig: np.ndarray,
    gof: np.ndarray,
    gstart: np.ndarray,
    centers: np.ndarray,
    A: np.ndarray,
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
    P: int,
    forced: np.ndarray,
    n_picks: int,
    out_order: np.ndarray,
    out_sim: np.ndarray,
    window: int,
    bail_frac: float,
) -> tuple[int, int, bool]:  # pragma: no cover - jitted
    """Apply `forced` picks (the seed set), then make up to `n_picks` greedy picks.

    Returns (forced applied, picks made, bailed). Bails out when, over the last `window`
    steps, more than `bail_frac` of the remaining rows needed a dot product per step.
    """
    G = gstart.shape[0] - 1
    d = Xp.shape[1]
    n_rem = 0
    for i in range(s.shape[0]):
        if s[i] != _INF:
            n_rem += 1
    x = np.empty(d, dtype=np.float64)
    touched_window = 0
    rem_window = 0
    steps_in_window = 0
    n_forced = forced.shape[0]
    made = 0
    applied = 0
    total = n_forced + n_picks
    for step in range(total):
        if n_rem == 0:
            break
        if step < n_forced:
            p = forced[step]
            applied += 1
        else:
            p = tpos[1]
            out_order[made] = orig[p]
            out_sim[made] = tval[1]
            made += 1
        for k in range(d):
            x[k] = np.float64(Xp[p, k])
        inv_p = inv_norm[p]
        s[p] = _INF
        n_rem -= 1
        h = gof[p]
        ap = rowang[p]
        touched = 0
        own_done = False
        for g in range(G):
            thr = gthr[g]
            if thr < -5.0:
                continue
            # coarse test from the precomputed centre-centre angle, no dot product
            if A[h, g] - ap - radius[g] >= thr:
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
                    # cos(ang - rowang[i]) bounds the similarity of row i to x
                    ub = cg * rowcos[i] + sa * rowsin[i]
                    if ub + _MARGIN <= si:
                        continue
                # fast value first; the reference decides only when it could raise s[i]
                v = _dot64(Xp, i, x) * inv_p * inv_norm[i]
                touched += 1
                if v > si - err64:
                    c = cosine_at(Xp, sq, i, Xp, sq, p)
                    if c > si:
                        s[i] = c
                        changed = True
            if changed or g == h:
                _refresh_group(s, gstart, orig, gmin, gthr, tval, tkey, tpos, P, g)
                if g == h:
                    own_done = True
        if not own_done:
            _refresh_group(s, gstart, orig, gmin, gthr, tval, tkey, tpos, P, h)
        touched_window += touched
        rem_window += n_rem + 1
        steps_in_window += 1
        if steps_in_window == window:
            if touched_window > bail_frac * rem_window:
                return applied, made, True
            touched_window = 0
            rem_window = 0
            steps_in_window = 0
    return applied, made, False


@numba.njit(cache=True, nogil=True)
def _refresh_all(
    s: np.ndarray,
    gstart: np.ndarray,
    orig: np.ndarray,
    gmin: np.ndarray,
    gthr: np.ndarray,
    tval: np.ndarray,
    tkey: np.ndarray,
    tpos: np.ndarray,
    P: int,
) -> None:  # pragma: no cover - jitted
    for g in range(gstart.shape[0] - 1):
        _refresh_group(s, gstart, orig, gmin, gthr, tval, tkey, tpos, P, g)


@numba.njit(cache=True, nogil=True)
def _row_angles(
    Xp: np.ndarray, centers: np.ndarray, gof: np.ndarray, rowcos: np.ndarray, radius: np.ndarray
) -> None:  # pragma: no cover - jitted
    """Cosine of each row to its centre (float64, clipped) and each group's largest angle."""
    radius[:] = 0.0
    for i in range(Xp.shape[0]):
        g = gof[i]
        c = min(1.0, max(-1.0, _dot64(Xp, i, centers[g])))
        rowcos[i] = c
        a = math.acos(c)
        if a > radius[g]:
            radius[g] = a


# --------------------------------------------------------------------------- grouping
@dataclass
class _Groups:
    perm: np.ndarray  # (N,) original index of each permuted row
    gof: np.ndarray  # (N,) group of each permuted row
    gstart: np.ndarray  # (G+1,)
    centers: np.ndarray  # (G, d) float64 unit
    A: np.ndarray  # (G, G) float32 centre-centre angles, rounded down
    radius: np.ndarray  # (G,) float64, rounded up
    rowang: np.ndarray  # (N,) float64 angle of each row to its centre
    rowcos: np.ndarray
    rowsin: np.ndarray


def _group_sums(X: np.ndarray, lab: np.ndarray, k: int) -> np.ndarray:
    """Per-label row sums (float64), via a sort and ``reduceat`` rather than ``add.at``."""
    order = np.argsort(lab, kind="stable")
    counts = np.bincount(lab, minlength=k)
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    present = counts > 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[present]
    sums[present] = np.add.reduceat(X[order], starts, axis=0, dtype=np.float64)
    return sums


def _assign(Xn: np.ndarray, C: np.ndarray, block: int = 4096) -> np.ndarray:
    """Nearest centre (max dot) for every row; blocked GEMM."""
    out = np.empty(len(Xn), dtype=np.int64)
    Cf = np.ascontiguousarray(C, dtype=np.float32)
    for a in range(0, len(Xn), block):
        out[a : a + block] = np.argmax(Xn[a : a + block] @ Cf.T, axis=1)
    return out


def _build_groups(X: np.ndarray, n_groups: int, *, check: bool = False) -> _Groups | None:
    """Group rows around spherical k-means centres. `X` need not be normalised: the
    nearest centre by cosine is the argmax of ``x @ c`` whatever the norm of x."""
    n = len(X)
    rng = np.random.default_rng(0)  # grouping only affects speed, never the order
    # Centres: a short spherical k-means on a subsample, then one full assignment pass.
    picked = np.sort(rng.choice(n, size=min(n, 16 * n_groups), replace=False))
    sample = normalize_rows(X, rows=picked)
    C = sample[rng.choice(len(sample), size=min(n_groups, len(sample)), replace=False)]
    C = C.astype(np.float64)
    for _ in range(3):
        lab = _assign(sample, C)
        sums = _group_sums(sample, lab, len(C))
        norms = np.linalg.norm(sums, axis=1)
        keep = norms > 0
        C = sums[keep] / norms[keep, None]
    if check and _separable_fraction(sample, C) < _MIN_SEPARABLE:
        return None
    lab = _assign(X, C)
    used = np.unique(lab)
    remap = np.full(len(C), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    lab = remap[lab]
    G = len(used)
    # rows grouped, and inside a group sorted by original index (the tie-break)
    perm = np.argsort(lab, kind="stable").astype(np.int64)
    gof = lab[perm].astype(np.int64)
    counts = np.bincount(gof, minlength=G)
    gstart = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(counts, out=gstart[1:])
    return _Groups(
        perm=perm,
        gof=gof,
        gstart=gstart,
        centers=C[used],
        A=np.empty((0, 0), np.float32),
        radius=np.empty(0),
        rowang=np.empty(0),
        rowcos=np.empty(0),
        rowsin=np.empty(0),
    )


def _separable_fraction(sample: np.ndarray, C: np.ndarray) -> float:
    """Share of group pairs that the triangle bound can ever tell apart, on a sample:
    ``angle(c_g, c_h) > r_g + r_h``. In high-dimensional isotropic data every radius is
    near 90 degrees and this is ~0: no pick could ever skip a group, so don't try."""
    lab = _assign(sample, C)
    cos = np.einsum("ij,ij->i", sample.astype(np.float64), C[lab])
    radius = np.zeros(len(C))
    np.maximum.at(radius, lab, np.arccos(np.clip(cos, -1.0, 1.0)))
    A = np.arccos(np.clip(C @ C.T, -1.0, 1.0))
    off = ~np.eye(len(C), dtype=bool)
    return float(((A - radius[:, None] - radius[None, :]) > 0)[off].mean())


def _finish_groups(grp: _Groups, Xp: np.ndarray) -> None:
    """Centres as normalised member means; row angles, radii and centre-centre angles,
    in float64 with conservative rounding."""
    n = len(Xp)
    # rows are grouped; float32 sums (a float64 `dtype` here would copy all of Xp): a centre
    # only has to be near the mean direction, the bounds below are exact for any centre
    sums = np.add.reduceat(Xp, grp.gstart[:-1], axis=0).astype(np.float64)
    grp.centers = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    rowcos = np.empty(n, dtype=np.float64)
    radius = np.empty(len(grp.centers), dtype=np.float64)
    _row_angles(Xp, grp.centers, grp.gof, rowcos, radius)
    grp.radius = radius + 1e-6
    grp.rowang = np.arccos(rowcos)
    grp.rowcos = rowcos
    grp.rowsin = np.sqrt(np.maximum(0.0, 1.0 - rowcos * rowcos))
    cc = np.clip(grp.centers @ grp.centers.T, -1.0, 1.0)
    grp.A = (np.arccos(cc) - 1e-6).astype(np.float32)


# --------------------------------------------------------------------------- driver
@dataclass
class GreedyState:
    """Telemetry of one run: how the work split between the two paths."""

    n_groups: int = 0
    pruned_steps: int = 0
    dense_steps: int = 0
    switches: int = 0


def _n_groups_for(n: int) -> int:
    return int(min(4096, max(8, round(3 * math.sqrt(n)))))


def greedy_order(
    X: np.ndarray,
    initial: np.ndarray,
    n_picks: int,
    *,
    method: str = "auto",
    progress: Callable[[int], None] | None = None,
    state: GreedyState | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact greedy max-min picks after a seed set.

    Parameters
    ----------
    X : ndarray of shape (n_images, n_dims)
        Finite rows with non-zero norm (validated by the caller).
    initial : ndarray of shape (n_initial,), int64
        Distinct indices of the seed set (at least one).
    n_picks : int
        Picks to make after the seed set, at most ``n_images - n_initial``.
    method : {"auto", "pruned", "dense"}
        "auto" prunes when N is large enough and the geometry allows it, and hands over to
        dense when pruning stops paying.

    Returns
    -------
    picks : ndarray of shape (n_picks,), int64
    max_similarity : ndarray of shape (n_picks,), float64
        Each pick's max cosine similarity to the set chosen before it.
    """
    n = len(X)
    state = state if state is not None else GreedyState()
    out_order = np.empty(n_picks, dtype=np.int64)
    out_sim = np.empty(n_picks, dtype=np.float64)
    use_pruned = method == "pruned" or (method == "auto" and n >= _MIN_PRUNED_N)
    grp = _build_groups(X, _n_groups_for(n), check=method == "auto") if use_pruned else None
    if grp is None:
        Xn = normalize_rows(X)
        sq = row_sqnorms(Xn)
        perm = np.arange(n, dtype=np.int64)
        s = np.full(n, -_INF)
        _dense_seed(Xn, sq, s, initial)
        _dense_run(Xn, sq, perm, s, n_picks, out_order, out_sim, progress)
        state.dense_steps += n_picks
        return out_order, out_sim

    Xp = normalize_rows(X, rows=grp.perm)  # the only full-size copy: memory ~2x X
    sq = row_sqnorms(Xp)
    inv_norm = 1.0 / np.sqrt(sq)  # for the fast values only
    err64 = _float64_error(Xp.shape[1])
    _finish_groups(grp, Xp)
    G = len(grp.centers)
    state.n_groups = G
    P = 1
    while P < G:
        P *= 2
    tval = np.full(2 * P, _INF)
    tkey = np.full(2 * P, np.iinfo(np.int64).max, dtype=np.int64)
    tpos = np.full(2 * P, -1, dtype=np.int64)
    gmin = np.full(G, -_INF)
    gthr = np.full(G, math.pi)
    s = np.full(n, -_INF)
    inv = np.empty(n, dtype=np.int64)
    inv[grp.perm] = np.arange(n)
    forced = inv[np.asarray(initial, dtype=np.int64)]
    # While s is -inf nothing can be skipped: the first seeds go through one GEMM (256 seeds
    # cost ~0.04 s per 100k rows); later seeds are pruned like picks once s is informative.
    n_dense_seeds = min(len(forced), 256)
    _dense_seed(Xp, sq, s, forced[:n_dense_seeds])
    forced = forced[n_dense_seeds:]
    _refresh_all(s, grp.gstart, grp.perm, gmin, gthr, tval, tkey, tpos, P)

    made = 0
    dense_len = 256
    pruned_ok = method == "pruned"
    window = 32
    chunk = 4096
    while forced.size or made < n_picks:
        applied, done, bailed = _pruned_run(
            Xp,
            grp.perm,
            grp.gof,
            grp.gstart,
            grp.centers,
            grp.A,
            grp.radius,
            grp.rowang,
            grp.rowcos,
            grp.rowsin,
            sq,
            inv_norm,
            err64,
            s,
            gmin,
            gthr,
            tval,
            tkey,
            tpos,
            P,
            forced,
            min(chunk, n_picks - made),
            out_order[made:],
            out_sim[made:],
            window,
            2.0 if pruned_ok else 0.25,
        )
        forced = forced[applied:]
        made += done
        state.pruned_steps += applied + done
        if progress is not None and done:
            progress(done)
        if not bailed:
            continue
        # Pruning does not pay here: the dense path takes over for a while.
        state.switches += 1
        if forced.size:
            # Bailed inside the seed set: the rest of it in one GEMM, then try pruning again
            # on the (now informed) picks before giving any picks to the dense path.
            _dense_seed(Xp, sq, s, forced)
            state.dense_steps += forced.size
            forced = forced[:0]
            _refresh_all(s, grp.gstart, grp.perm, gmin, gthr, tval, tkey, tpos, P)
            continue
        k = min(dense_len, n_picks - made)
        _dense_run(Xp, sq, grp.perm, s, k, out_order[made:], out_sim[made:], progress)
        made += k
        state.dense_steps += k
        dense_len *= 2
        _refresh_all(s, grp.gstart, grp.perm, gmin, gthr, tval, tkey, tpos, P)
    return out_order, out_sim


def _gemm(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` in float32 BLAS (its rounding may differ from CPU to CPU)."""
    return A @ B


@numba.njit(cache=True, nogil=True)
def _raise_block(
    V: np.ndarray,
    Xp: np.ndarray,
    sq: np.ndarray,
    r0: int,
    cols: np.ndarray,
    s: np.ndarray,
    err: float,
) -> None:  # pragma: no cover - jitted
    """``s[r0 + r] = max(s[r0 + r], max_c cosine_at(r0 + r, cols[c]))`` given the float32
    products ``V[r, c]`` (error <= err): only entries within 2 err of the row's float32 maximum
    and within err of its ``s`` can matter, and only they are recomputed. Picked rows (+inf)
    stay as they are."""
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
                v = cosine_at(Xp, sq, i, Xp, sq, cols[c])
                if v > si:
                    si = v
        s[i] = si


def _dense_seed(
    Xp: np.ndarray,
    sq: np.ndarray,
    s: np.ndarray,
    seeds: np.ndarray,
    row_block: int = 4096,
    seed_block: int = 1024,
) -> None:
    """Raise `s` with a batch of seed rows via GEMM (order inside the seed set is irrelevant).

    Contiguous row blocks against a packed block of seeds: no gather of the rows. The float32
    products only select which pairs the reference similarity is computed for.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    err = float32_error(Xp.shape[1])
    for a in range(0, len(seeds), seed_block):
        cols = seeds[a : a + seed_block]
        Bt = np.ascontiguousarray(Xp[cols].T)  # (d, b)
        for r in range(0, len(Xp), row_block):
            V = _gemm(Xp[r : r + row_block], Bt)  # (rows, b) float32
            _raise_block(V, Xp, sq, r, cols, s, err)
    s[seeds] = _INF


@numba.njit(cache=True, nogil=True)
def _raise_one(
    v: np.ndarray, Xr: np.ndarray, qr: np.ndarray, j: int, s: np.ndarray, err: float
) -> None:  # pragma: no cover - jitted
    """``s = max(s, cosine_at(., j))`` given the float32 products ``v`` (error <= err): a row
    can only rise where ``v >= s - err``; only there is the reference computed. Picked rows
    (+inf) never pass the test."""
    for i in range(v.shape[0]):
        if v[i] >= s[i] - err:
            c = cosine_at(Xr, qr, i, Xr, qr, j)
            if c > s[i]:
                s[i] = c
    s[j] = _INF


def _dense_pick(Xr: np.ndarray, qr: np.ndarray, s: np.ndarray, j: int, err: float) -> None:
    """Raise `s` with row j's similarities (one float32 GEMV, the reference where it
    matters), then mark j picked."""
    _raise_one(_gemm(Xr, Xr[j]), Xr, qr, j, s, err)  # (m,) float32 products


def _dense_run(
    Xp: np.ndarray,
    sq: np.ndarray,
    orig: np.ndarray,
    s: np.ndarray,
    k: int,
    out_order: np.ndarray,
    out_sim: np.ndarray,
    progress: Callable[[int], None] | None,
) -> None:
    """`k` greedy picks with one BLAS GEMV over the remaining rows per pick.

    Long runs re-pack the remaining rows (sorted by original index, so ``argmin``'s first
    hit is the lowest index) and re-pack again each time half of them have been picked;
    short runs work in place.
    """
    err = float32_error(Xp.shape[1])
    done = 0
    while done < k:
        rem = np.flatnonzero(s != _INF)
        m = len(rem)
        if 4 * (k - done) < m:
            # Few picks relative to the pool: re-packing (a full copy) would not pay, and on a
            # million rows it would cost as much memory as the embeddings themselves.
            in_order = bool((np.diff(orig) > 0).all())  # then argmin's first hit is the lowest
            for _ in range(k - done):
                j = int(np.argmin(s))
                if not in_order:
                    ties = np.flatnonzero(s == s[j])
                    if len(ties) > 1:
                        j = int(ties[np.argmin(orig[ties])])
                out_order[done] = orig[j]
                out_sim[done] = s[j]
                _dense_pick(Xp, sq, s, j, err)  # picked rows stay at +inf
                done += 1
                if progress is not None and done % 256 == 0:
                    progress(256)
            break
        rem = rem[np.argsort(orig[rem], kind="stable")]  # argmin's first hit = lowest index
        Xr = Xp[rem]  # (m, d) contiguous copy of the remaining rows
        qr = sq[rem]
        sr = s[rem].copy()
        for _ in range(min(k - done, max(1, m // 2))):
            j = int(np.argmin(sr))
            out_order[done] = orig[rem[j]]
            out_sim[done] = sr[j]
            _dense_pick(Xr, qr, sr, j, err)
            done += 1
            if progress is not None and done % 256 == 0:
                progress(256)
        s[rem] = sr
    if progress is not None and done % 256:
        progress(done % 256)
