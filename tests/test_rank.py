from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import enrich
from enrich.errors import EnrichError
from enrich.select import SELECTORS, EnrichSelector, RandomSelector
from enrich.select._greedy import GreedyState, greedy_order

from _data import clustered, gaussian
from _reference import assert_valid_greedy, greedy_reference

# The authors' published 8-image example (rows A-H).
GOLDEN_S = np.array(
    [
        [1, 0.16, 0.15, 0.14, 0.10, 0.004, 0.07, 0.50],
        [0.16, 1, 0.13, 0.12, 0.08, 0.06, 0.133, 0.20],
        [0.15, 0.13, 1, 0.11, 0.09, 0.21, 0.22, 0.23],
        [0.14, 0.12, 0.11, 1, 0.71, 0.06, 0.18, 0.19],
        [0.10, 0.08, 0.09, 0.71, 1, 0.24, 0.25, 0.06],
        [0.004, 0.06, 0.21, 0.06, 0.24, 1, 0.44, 0.42],
        [0.07, 0.133, 0.22, 0.18, 0.25, 0.44, 1, 0.001],
        [0.50, 0.20, 0.23, 0.19, 0.06, 0.42, 0.001, 1],
    ]
)
GOLDEN_ORDER = list("ABFDCGHE")


def letters(order: np.ndarray) -> list[str]:
    return ["ABCDEFGH"[i] for i in order]


def golden_embeddings() -> np.ndarray:
    w, V = np.linalg.eigh(GOLDEN_S)
    assert (w > 0).all()  # positive definite, so E = V sqrt(L) has Gram matrix S
    return V * np.sqrt(w)


def test_golden_precomputed() -> None:
    r = enrich.rank(GOLDEN_S, initial=[0, 1], metric="precomputed")
    assert letters(r.order) == GOLDEN_ORDER
    assert np.isnan(r.max_similarity[:2]).all()
    # F's max similarity to {A, B} is max(0.004, 0.06)
    assert r.max_similarity[2] == pytest.approx(0.06)


@pytest.mark.parametrize("method", ["auto", "dense", "pruned"])
def test_golden_embeddings(method: str) -> None:
    E = golden_embeddings()
    np.testing.assert_allclose(E @ E.T, GOLDEN_S, atol=1e-12)
    sel = EnrichSelector(method=method).fit(E, initial=[0, 1])
    assert letters(sel.order_) == GOLDEN_ORDER


@pytest.mark.parametrize("make", [clustered, gaussian], ids=["clustered", "gaussian"])
@pytest.mark.parametrize("method", ["pruned", "dense", "auto"])
def test_fast_matches_float64_reference(make, method: str) -> None:
    X = make(1500, 32, seed=3)
    init = np.random.default_rng(0).choice(len(X), 20, replace=False)
    picks, sims = greedy_order(X, init, 600, method=method)
    assert_valid_greedy(X, init, picks)
    _, ref_sims = greedy_reference(X, init, 600)
    # the max-similarity sequence is the same whichever valid tie-break was taken
    np.testing.assert_allclose(sims, ref_sims, atol=2e-6)


def test_pruned_path_really_prunes_on_clustered_data() -> None:
    X = clustered(6000, 64, seed=1)
    init = np.random.default_rng(0).choice(len(X), 100, replace=False)
    state = GreedyState()
    picks, _ = greedy_order(X, init, 2000, method="auto", state=state)
    assert state.n_groups > 1 and state.pruned_steps > 1500
    # the seeds (s = -inf everywhere) make the kernel hand over to dense once, and back
    assert state.switches >= 1
    assert_valid_greedy(X, init, picks[:400])


def test_auto_falls_back_to_dense_on_gaussian() -> None:
    X = gaussian(6000, 64, seed=1)
    init = np.random.default_rng(0).choice(len(X), 10, replace=False)
    state = GreedyState()
    picks, _ = greedy_order(X, init, 3000, method="auto", state=state)
    # the geometry check sees that no group pair is separable: pruning is not even tried
    assert state.pruned_steps == 0 and state.dense_steps == 3000
    # both dense variants (in place for short runs, re-packed for long ones) stay exact
    assert_valid_greedy(X, init, picks)


@pytest.mark.parametrize("make", [clustered, gaussian], ids=["clustered", "gaussian"])
def test_dense_in_place_path_is_exact(make) -> None:
    # few picks relative to N: the dense path works in place on a float32 copy of s
    X = make(6000, 32, seed=9)
    init = np.random.default_rng(2).choice(len(X), 30, replace=False)
    picks, sims = greedy_order(X, init, 1000, method="dense")
    assert_valid_greedy(X, init, picks)
    np.testing.assert_allclose(sims, greedy_reference(X, init, 1000)[1], atol=2e-6)


def test_full_ranking_is_permutation_and_deterministic() -> None:
    X = clustered(5000, 16, seed=2)
    a = enrich.rank(X, initial=0.02, seed=7)
    b = enrich.rank(X, initial=0.02, seed=7)
    assert np.array_equal(np.sort(a.order), np.arange(len(X)))
    assert np.array_equal(a.order, b.order)
    np.testing.assert_array_equal(a.max_similarity, b.max_similarity)
    c = enrich.rank(X, initial=0.02, seed=8)
    assert not np.array_equal(a.order[: a.n_initial], c.order[: c.n_initial])


def test_same_order_for_any_blas_thread_count() -> None:
    from threadpoolctl import threadpool_limits

    X = clustered(5000, 32, seed=4)
    with threadpool_limits(1):
        one = enrich.rank(X, initial=50, seed=1, budget=2000).order
    with threadpool_limits(2):
        two = enrich.rank(X, initial=50, seed=1, budget=2000).order
    assert np.array_equal(one, two)


embedding_arrays = arrays(
    np.float64,
    st.tuples(st.integers(3, 40), st.integers(1, 6)),
    elements=st.floats(-10, 10, allow_nan=False, width=32),
).filter(lambda a: (np.linalg.norm(a, axis=1) > 1e-3).all())


@settings(max_examples=40, deadline=None)
@given(X=embedding_arrays, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_properties(X: np.ndarray, seed: int, data: st.DataObject) -> None:
    n = len(X)
    n_init = data.draw(st.integers(1, n - 1))
    init = np.random.default_rng(seed).choice(n, n_init, replace=False)
    full = enrich.rank(X, initial=init)
    # a permutation, with the initial set first and in the given order
    assert np.array_equal(np.sort(full.order), np.arange(n))
    assert np.array_equal(full.order[:n_init], init)
    # budget k is a prefix of budget k + 1
    k = data.draw(st.integers(0, n - n_init - 1))
    a = enrich.rank(X, initial=init, budget=k).order
    b = enrich.rank(X, initial=init, budget=k + 1).order
    assert np.array_equal(a, b[: len(a)])
    # each pick only raises the others' similarity to the chosen set: never decreases
    sims = full.max_similarity[n_init:]
    assert (np.diff(sims) >= -1e-6).all()
    assert_valid_greedy(X, init, full.order[n_init:])


@pytest.mark.parametrize("seed", [0, 1, 2, 12345])
def test_any_seed_gives_a_valid_order(seed: int) -> None:
    X = clustered(800, 8, seed=seed)
    r = enrich.rank(X, initial=0.05, seed=seed, budget=200)
    assert r.n_initial == 40
    assert_valid_greedy(X, r.order[:40], r.order[40:])


def test_initial_specs() -> None:
    X = gaussian(100, 4)
    assert enrich.rank(X, seed=0).n_initial == 1
    assert enrich.rank(X, initial=0.1, seed=0).n_initial == 10
    assert enrich.rank(X, initial=7, seed=0).n_initial == 7
    assert list(enrich.rank(X, initial=np.array([5, 3])).order[:2]) == [5, 3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": 1.5}, r"initial=1.5 is out of range"),
        ({"initial": 0.0}, r"out of range"),
        ({"initial": 101}, r"initial=101 images is out of range"),
        ({"initial": [0, 100]}, r"out of range 0..99: 100"),
        ({"initial": [-1]}, r"out of range"),
        ({"initial": [2, 2]}, r"repeat: 2"),
        ({"initial": []}, r"empty"),
        ({"initial": 5, "budget": 96}, r"budget=96 is larger than the 95 images"),
        ({"budget": -1}, r"negative"),
        ({"metric": "euclid"}, r"metric='euclid'"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(EnrichError, match=match):
        enrich.rank(gaussian(100, 4), seed=0, **kwargs)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones(5), r"shape \(5,\): expected a 2-D"),
        (np.ones((1, 3)), r"N=1 rows"),
        (np.array([[1.0, 0], [np.nan, 1], [1, 1]]), r"NaN or inf: ids 1"),
        (np.array([[1.0, 0], [0, 0], [1, 1]]), r"zero-norm row\(s\).*ids 1"),
    ],
)
def test_bad_embeddings(X: np.ndarray, match: str) -> None:
    with pytest.raises(EnrichError, match=match):
        enrich.rank(X)


def test_ragged_embeddings() -> None:
    with pytest.raises(EnrichError, match="ragged"):
        enrich.rank([[1.0, 2.0], [3.0]])


def test_bad_precomputed() -> None:
    with pytest.raises(EnrichError, match="square"):
        enrich.rank(np.ones((3, 4)), metric="precomputed")
    S = GOLDEN_S.copy()
    S[0, 1] = 0.9
    with pytest.raises(EnrichError, match="not symmetric"):
        enrich.rank(S, metric="precomputed")


def test_registry_and_random_selector() -> None:
    assert SELECTORS["enrich"] is EnrichSelector and SELECTORS["random"] is RandomSelector
    assert next(iter(SELECTORS)) == "enrich"  # the default comes first
    X = gaussian(50, 3)
    r = RandomSelector(seed=3, budget=10).fit(X, initial=[1, 2])
    assert list(r.order_[:2]) == [1, 2] and len(r.order_) == 12
    assert len(set(r.order_.tolist())) == 12
    assert np.array_equal(r.order_, RandomSelector(seed=3, budget=10).fit(X, initial=[1, 2]).order_)
    assert not np.array_equal(
        r.order_, RandomSelector(seed=4, budget=10).fit(X, initial=[1, 2]).order_
    )
    # sklearn style: __init__ only stores, fit returns self
    sel = EnrichSelector(budget=3, seed=0)
    assert sel.get_params() == {"budget": 3, "seed": 0, "metric": "cosine", "method": "auto"}
    assert sel.fit(X) is sel and len(sel.max_similarity_) == 4


# Powers of two near 1e-25, 1e19 and 1e20: scaling by them is exact in float32, so the
# scaled rows have exactly the directions of the originals and the answer must not move.
EXTREME_SCALES = (2.0**-83, 2.0**63, 2.0**66)


def test_extreme_magnitudes_give_the_same_order() -> None:
    X = clustered(400, 16, seed=3)
    ref = enrich.rank(X, initial=[0, 1]).order
    for scale in EXTREME_SCALES:
        np.testing.assert_array_equal(enrich.rank(X * np.float32(scale), initial=[0, 1]).order, ref)
    mixed = X * np.float32(np.array([1.0, *EXTREME_SCALES]))[np.arange(len(X)) % 4, None]
    np.testing.assert_array_equal(enrich.rank(mixed, initial=[0, 1]).order, ref)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.array([[1e39, 1.0], [1.0, 2.0], [3e38, 5e38]]), r"beyond the float32 range.*ids 0, 2"),
        (np.array([[1e-50, 0.0], [1.0, 2.0]]), r"below the float32 range.*ids 0"),
        (np.array([[1 + 1j, 2.0], [1.0, 2.0]]), r"complex dtype complex128: expected real"),
    ],
)
def test_unrepresentable_embeddings(X: np.ndarray, match: str) -> None:
    with pytest.raises(EnrichError, match=match):
        enrich.rank(X)
    from enrich.redundancy import redundancy

    with pytest.raises(EnrichError, match=match):
        redundancy(X)


def test_cli_extreme_magnitudes(tmp_path, capsys) -> None:
    import pandas as pd

    from enrich.cli import main

    X = clustered(300, 16, seed=5)
    orders = []
    for k, scale in enumerate((1.0, *EXTREME_SCALES)):
        np.save(tmp_path / f"e{k}.npy", X * np.float32(scale))
        out = tmp_path / f"o{k}.csv"
        assert main(["rank", "-e", str(tmp_path / f"e{k}.npy"), "--seed", "0", "-o", str(out)]) == 0
        order = pd.read_csv(out)
        assert order["id"].is_unique and len(order) == len(X)
        orders.append(order["id"].tolist())
    assert all(o == orders[0] for o in orders[1:])
    capsys.readouterr()
    for bad, match in (
        (np.array([[1e39, 1.0], [1.0, 2.0]]), "beyond the float32 range"),
        (np.array([[1j, 1.0], [1.0, 2.0]]), "complex"),
    ):
        np.save(tmp_path / "bad.npy", bad)
        code = main(["rank", "-e", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "b.csv")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and match in err, err
        assert "Traceback" not in err and not (tmp_path / "b.csv").exists()


def with_copies(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Clustered rows plus exact copies and copies scaled by 4 (exactly the same direction in
    float32), shuffled in; returns X and the index sets of identical rows."""
    rng = np.random.default_rng(seed)
    B = clustered(1200, 16, seed=seed)
    src = np.r_[np.arange(1200), rng.choice(1200, 150, replace=False), np.arange(3, 1200, 40)]
    X = np.vstack([B, B[src[1200:1350]], B[src[1350:]] * 4.0])
    shuffle = rng.permutation(len(X))
    X, src = X[shuffle], src[shuffle]
    sets = [np.flatnonzero(src == v) for v in np.unique(src)]
    return X, [g for g in sets if len(g) > 1]


@pytest.mark.parametrize("method", ["dense", "pruned", "auto"])
def test_copies_tie_exactly_and_go_to_the_lowest_index(method: str) -> None:
    X, sets = with_copies()
    in_sets = np.concatenate(sets)
    init = np.setdiff1d(np.arange(len(X)), in_sets)[:12]
    r = EnrichSelector(method=method).fit(X, initial=init)
    pos = np.empty(len(X), dtype=np.int64)
    pos[r.order_] = np.arange(len(X))
    for g in sets:  # identical rows tie at every step: the lowest index comes first
        assert pos[g].argmin() == 0, g
    # then every other copy has similarity exactly 1 and they come last, in index order
    later = np.sort(np.concatenate([g[1:] for g in sets]))
    tail = r.order_[-len(later) :]
    np.testing.assert_array_equal(tail, later)
    assert (r.max_similarity_[-len(later) :] == 1.0).all()
    assert (r.max_similarity_[r.n_initial_ : -len(later)] < 1.0).all()
    # every path computes the same reference values, so they give the same order
    other = EnrichSelector(method="dense" if method != "dense" else "pruned").fit(X, initial=init)
    np.testing.assert_array_equal(other.order_, r.order_)
    np.testing.assert_array_equal(other.max_similarity_, r.max_similarity_)


@pytest.mark.parametrize("method", ["dense", "pruned"])
def test_float32_rounding_does_not_change_the_order(monkeypatch, method: str) -> None:
    # Another CPU's BLAS rounds the float32 products differently: emulate it by perturbing
    # each product by up to 4 float32 ulps. The order and its similarities must not move.
    import enrich.select._greedy as mod

    X, _ = with_copies(seed=1)
    X = np.vstack([X, X[:50]])
    X[-50:, 0] = np.nextafter(X[-50:, 0], np.float32(np.inf))  # one ulp off a row
    init = np.arange(0, len(X), 97)
    ref = greedy_order(X, init, len(X) - len(init), method=method)
    rng = np.random.default_rng(0)
    exact = mod._gemm

    def noisy(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        out = exact(A, B)
        return out * (1 + rng.uniform(-4, 4, size=out.shape).astype(np.float32) * 2.0**-24)

    monkeypatch.setattr(mod, "_gemm", noisy)
    got = greedy_order(X, init, len(X) - len(init), method=method)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
