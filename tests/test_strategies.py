"""The label-free strategies (issue 10): each against a slow reference, and the contract."""

from __future__ import annotations

import functools
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrich.cli import main
from enrich.errors import EnrichError
from enrich.select import SELECTORS, STRATEGIES
from enrich.select._kmeans import kmeans
from enrich.select._knn import knn_cosine, unit_rows
from enrich.select.enrich_dense import DenseEnrichSelector, outliers_by_density
from enrich.select.facility import FacilitySelector, facility_order, similarity_graph
from enrich.select.probcover import (
    ProbCoverSelector,
    distances,
    probcover_order,
    purity_delta,
)
from enrich.select.typiclust import TypiClustSelector, typicality, typiclust_order

from _data import clustered, gaussian
from _reference import (
    assert_valid_facility,
    assert_valid_greedy,
    assert_valid_typiclust,
    facility_matrix_reference,
    knn_reference,
    probcover_reference,
    purity_delta_reference,
    typicality_reference,
    unit64,
)

NEW = ["typiclust", "probcover", "facility", "repdiv", "enrich_dense"]
ALL = list(STRATEGIES)


def blobs(n: int, d: int = 10, *, seed: int = 0, centres: int = 4) -> np.ndarray:
    """Tight angular blobs, plus outliers in random directions (the first n // 20 rows)."""
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(centres, d))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    X = C[rng.integers(centres, size=n)] + 0.2 * rng.normal(size=(n, d)) / np.sqrt(d)
    X[: max(1, n // 20)] = rng.normal(size=(max(1, n // 20), d))
    return X


# ------------------------------------------------------------------------- shared parts
@pytest.mark.parametrize(("n", "k", "block"), [(40, 5, 16), (130, 20, 32), (97, 96, 1024)])
def test_knn_matches_reference(n: int, k: int, block: int) -> None:
    X = gaussian(n, 7, seed=n)
    nb, sv = knn_cosine(unit_rows(X), k, block=block)
    _, rsv = knn_reference(X, k)
    np.testing.assert_allclose(sv, rsv, atol=1e-5)
    # the neighbours found are as similar as the true ones (exact up to float32 ties)
    S = unit64(X) @ unit64(X).T
    np.testing.assert_allclose(np.take_along_axis(S, nb, 1), rsv, atol=1e-5)
    assert (nb != np.arange(n)[:, None]).all()
    assert all(len(set(row)) == k for row in nb.tolist())


@pytest.mark.parametrize("workers", [2, 3])
def test_knn_is_the_same_for_any_number_of_workers(workers: int) -> None:
    X = clustered(300, 8, seed=3)
    X = np.vstack([X, X[::9], np.tile(X[:1], (5, 1))])  # exact duplicates: ties
    Xn = unit_rows(X)
    one = knn_cosine(Xn, 12, block=64, workers=1)
    many = knn_cosine(Xn, 12, block=64, workers=workers)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])


def test_knn_ties_keep_the_lowest_indices() -> None:
    X = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]])  # exact duplicates: similarity exactly 1
    nb, _ = knn_cosine(unit_rows(X), 2, block=2)
    assert nb[:5].tolist() == [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]]
    assert nb[5].tolist() == [0, 1]


def test_kmeans_is_a_lloyd_fixed_point() -> None:
    Xn = unit_rows(blobs(300, seed=1))
    labels, C = kmeans(Xn, 4, np.random.default_rng(0))
    assert set(labels.tolist()) == {0, 1, 2, 3}
    # each row is assigned to its nearest centre, each centre is its members' mean
    D = ((Xn[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    assert (D[np.arange(len(Xn)), labels] <= D.min(axis=1) + 1e-5).all()
    for c in range(4):
        np.testing.assert_allclose(C[c], Xn[labels == c].mean(axis=0), atol=1e-5)


def test_kmeans_separates_obvious_clusters_and_is_seeded() -> None:
    X = np.concatenate([np.tile([1.0, 0, 0], (30, 1)), np.tile([0, 1.0, 0], (20, 1))])
    X += np.random.default_rng(0).normal(scale=0.01, size=X.shape)
    Xn = unit_rows(X)
    lab, _ = kmeans(Xn, 2, np.random.default_rng(5))
    assert len(set(lab[:30])) == 1 and len(set(lab[30:])) == 1 and lab[0] != lab[30]
    a = kmeans(Xn, 5, np.random.default_rng(7))[0]
    assert np.array_equal(a, kmeans(Xn, 5, np.random.default_rng(7))[0])


# --------------------------------------------------------------------------- TypiClust
def test_typicality_matches_reference() -> None:
    X = blobs(80, seed=2)
    _, sims = knn_cosine(unit_rows(X), 20)
    np.testing.assert_allclose(typicality(sims), typicality_reference(X, 20), rtol=1e-5)


@pytest.mark.parametrize(("n", "n_init", "budget"), [(90, 3, None), (120, 1, 40), (60, 10, 8)])
def test_typiclust_matches_reference(n: int, n_init: int, budget: int | None) -> None:
    X = blobs(n, seed=n)
    Xn = unit_rows(X)
    cluster = functools.cache(lambda K: kmeans(Xn, K, np.random.default_rng(K))[0])
    init = np.arange(n_init, dtype=np.int64) * 3
    n_picks = n - n_init if budget is None else budget
    _, sims = knn_cosine(Xn, 20)
    picks, stages = typiclust_order(
        typicality(sims), init, n_picks, cluster, max_clusters=25, min_cluster_size=2
    )
    assert sum(s["picks"] for s in stages) == n_picks
    assert_valid_typiclust(X, init, picks, cluster, max_clusters=25, min_cluster_size=2)


def test_typiclust_one_round_is_the_paper() -> None:
    """Budget <= |L|: one round, |L| + B clusters, one pick per largest uncovered cluster."""
    X = blobs(200, seed=3)
    sel = TypiClustSelector(seed=1, budget=4).fit(X, initial=np.arange(6))
    assert sel.result_.info["stages"] == [{"clusters": 10, "picks": 4}]


def test_typiclust_prefers_typical_images_over_outliers() -> None:
    X = blobs(400, seed=4)  # rows 0..19 are far outliers
    order = TypiClustSelector(seed=0, budget=8).fit(X, initial=[100]).order_
    assert not set(order[1:].tolist()) & set(range(20))


# --------------------------------------------------------------------------- ProbCover
def _safe_delta(X: np.ndarray, q: float) -> float:
    """A δ near the q-quantile of distances, away from every pairwise distance (and its
    halvings) by 1e-4, so float32 and float64 agree on every edge."""
    U = unit64(X)
    D = np.sqrt(np.maximum(2.0 - 2.0 * (U @ U.T), 0.0))[np.triu_indices(len(U), 1)]
    for cand in np.quantile(D, np.linspace(q, q + 0.1, 200)):
        if all(np.abs(D - cand / 2**r).min() > 1e-4 for r in range(8)):
            return float(cand)
    raise AssertionError("no safe delta")


@pytest.mark.parametrize(("n", "q", "budget"), [(50, 0.05, None), (70, 0.15, 30), (40, 0.3, None)])
def test_probcover_matches_reference(n: int, q: float, budget: int | None) -> None:
    X = blobs(n, seed=10 + n)
    delta = _safe_delta(X, q)
    init = np.array([5, 1])
    n_picks = n - 2 if budget is None else budget
    nb, sims = knn_cosine(unit_rows(X), n - 1)  # a complete graph: exact balls
    picks, _ = probcover_order(nb, distances(sims), delta, init, n_picks)
    assert picks.tolist() == probcover_reference(X, delta, init, n_picks)
    sel = ProbCoverSelector(delta=delta, max_degree=n, budget=budget).fit(X, initial=init)
    assert sel.order_[2:].tolist() == picks.tolist()


@pytest.mark.parametrize("seed", range(3))
def test_purity_delta_matches_brute_force(seed: int) -> None:
    X = blobs(45, seed=seed)
    labels = kmeans(unit_rows(X), 3, np.random.default_rng(seed))[0]
    nb, sims = knn_cosine(unit_rows(X), 44)
    delta, exact = purity_delta(nb, distances(sims), labels, 0.9)
    assert exact
    assert delta == pytest.approx(purity_delta_reference(X, labels, 0.9), abs=1e-5)


def test_purity_delta_on_a_truncated_graph_is_conservative() -> None:
    X = blobs(60, seed=5)
    labels = kmeans(unit_rows(X), 2, np.random.default_rng(0))[0]
    full = purity_delta(*_nb_dist(X, 59), labels, 0.95)[0]
    small, _ = purity_delta(*_nb_dist(X, 3), labels, 0.95)
    assert small <= full + 1e-6


def _nb_dist(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    nb, sims = knn_cosine(unit_rows(X), k)
    return nb, distances(sims)


def test_probcover_first_picks_cover_the_dense_blobs() -> None:
    X = blobs(400, seed=6, centres=3)
    sel = ProbCoverSelector(seed=0, budget=3, n_clusters=3).fit(X, initial=[0])
    assert sel.result_.info["delta"] > 0
    assert not set(sel.order_[1:].tolist()) & set(range(20))  # no outlier among the picks


def test_probcover_graph_stays_sparse() -> None:
    X = clustered(3000, 16)
    sel = ProbCoverSelector(seed=0, max_degree=8, budget=50).fit(X, initial=3)
    assert sel.result_.info["max_degree"] == 8 and len(sel.order_) == 53


# --------------------------------------------------------------------------- facility
@pytest.mark.parametrize(("n", "k"), [(60, 59), (90, 10), (50, 3)])
def test_facility_matches_reference(n: int, k: int) -> None:
    X = blobs(n, seed=20 + n)
    sel = FacilitySelector(k=k).fit(X, initial=[7])
    W = facility_matrix_reference(X, k)
    assert_valid_facility(W, np.array([7]), sel.order_[1:])


def test_similarity_graph_matches_reference() -> None:
    X = blobs(50, seed=9)
    nb, sims = knn_cosine(unit_rows(X), 6)
    indptr, indices, data = similarity_graph(nb, sims)
    from scipy import sparse

    W = sparse.csr_matrix((data, indices, indptr), shape=(50, 50)).toarray()
    np.testing.assert_allclose(W, facility_matrix_reference(X, 6), atol=1e-6)


def test_facility_with_diversity_interleaves_max_min_picks() -> None:
    X = blobs(80, seed=11)
    nb, sims = knn_cosine(unit_rows(X), 79)
    indptr, indices, data = similarity_graph(nb, sims)
    init = np.array([2])
    picks, gains = facility_order(indptr, indices, data, init, 20, diversity=0.3, Xn=unit_rows(X))
    is_div = np.floor(0.3 * np.arange(1, 21) + 1e-9) > np.floor(0.3 * np.arange(0, 20) + 1e-9)
    assert is_div.sum() == 6
    # each diversity pick is ENRICH's rule against everything chosen before it
    U = unit64(X)
    W = facility_matrix_reference(X, 79)
    chosen = list(init)
    for t, p in enumerate(picks):
        if is_div[t]:
            s = (U @ U[chosen].T).max(axis=1)
            s[chosen] = np.inf
            assert s[p] <= s.min() + 1e-6
            assert gains[t] == pytest.approx(-s[p], abs=1e-5)
        else:
            assert_valid_facility(W, np.array(chosen), np.array([p]))
            assert gains[t] > 0
        chosen.append(int(p))


def test_facility_prefers_representative_images_over_outliers() -> None:
    X = blobs(400, seed=4)
    order = FacilitySelector(budget=6).fit(X, initial=[100]).order_
    assert not set(order[1:].tolist()) & set(range(20))


# ----------------------------------------------------------------------- density guard
def test_enrich_dense_is_enrich_on_inliers_then_outliers() -> None:
    X = blobs(150, seed=12)
    init = np.array([40, 41])
    sel = DenseEnrichSelector(outlier_fraction=0.1).fit(X, initial=init)
    _, sims = knn_cosine(unit_rows(X), 20)
    outlier, _ = outliers_by_density(sims, 0.1)
    picks = sel.order_[2:]
    n_in = int((~outlier).sum()) - int((~outlier[init]).sum())
    assert not outlier[picks[:n_in]].any() and outlier[picks[n_in:]].all()
    assert_valid_greedy(
        X[~outlier | np.isin(np.arange(150), init)], *_remap(outlier, init, picks[:n_in])
    )
    assert_valid_greedy(X, np.concatenate([init, picks[:n_in]]), picks[n_in:])


def _remap(outlier: np.ndarray, init: np.ndarray, picks: np.ndarray):
    keep = ~outlier
    keep[init] = True
    pos = np.cumsum(keep) - 1
    return pos[init], pos[picks]


def test_enrich_dense_density_matches_reference() -> None:
    X = blobs(70, seed=13)
    _, sims = knn_cosine(unit_rows(X), 20)
    U = unit64(X)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    ref = np.sort(S, axis=1)[:, ::-1][:, :20].mean(axis=1)
    np.testing.assert_allclose(outliers_by_density(sims, 0.2)[1], ref, atol=1e-6)


def test_enrich_dense_avoids_outliers_first_where_enrich_takes_them() -> None:
    X = blobs(300, seed=14)  # rows 0..14 are far outliers
    plain = SELECTORS["enrich"](budget=5).fit(X, initial=[200]).order_[1:]
    guarded = DenseEnrichSelector(budget=5).fit(X, initial=[200]).order_[1:]
    assert set(plain.tolist()) & set(range(15))  # the weakness is real on this data
    assert not set(guarded.tolist()) & set(range(15))


def test_enrich_dense_without_a_guard_is_enrich() -> None:
    X = blobs(120, seed=17)
    plain = SELECTORS["enrich"](seed=3).fit(X, initial=4)
    guarded = DenseEnrichSelector(seed=3, outlier_fraction=0.0).fit(X, initial=4)
    assert np.array_equal(plain.order_, guarded.order_)
    np.testing.assert_allclose(plain.max_similarity_, guarded.max_similarity_)


def test_enrich_dense_without_initial_starts_at_the_densest_image() -> None:
    X = blobs(100, seed=15)
    _, sims = knn_cosine(unit_rows(X), 20)
    sel = DenseEnrichSelector(budget=3).fit(X)
    assert sel.order_[0] == int(np.argmax(sims.mean(axis=1)))


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", ALL)
def test_contract_full_order_initial_first_and_seeded(name: str) -> None:
    X = clustered(150, 8, seed=1)
    a = SELECTORS[name](seed=4).fit(X, initial=5)
    assert sorted(a.order_.tolist()) == list(range(150))  # a permutation
    b = SELECTORS[name](seed=4).fit(X, initial=5)
    assert np.array_equal(a.order_, b.order_)  # deterministic for a seed
    c = SELECTORS[name](seed=4, budget=7).fit(X, initial=[9, 3])
    assert c.order_[:2].tolist() == [9, 3] and len(c.order_) == 9 and c.n_initial_ == 2
    assert len(set(c.order_.tolist())) == 9
    assert len(c.max_similarity_) == 9 and np.isnan(c.max_similarity_[:2]).all()
    # the random seed set is the one every strategy draws for this seed
    assert set(a.order_[:5].tolist()) == set(
        SELECTORS["enrich"](seed=4, budget=0).fit(X, initial=5).order_.tolist()
    )


@pytest.mark.parametrize("name", ["probcover", "facility", "repdiv", "enrich_dense"])
def test_budget_prefix_is_a_prefix_of_the_full_order(name: str) -> None:
    X = blobs(120, seed=16)
    full = SELECTORS[name](seed=1).fit(X, initial=[4]).order_
    part = SELECTORS[name](seed=1, budget=30).fit(X, initial=[4]).order_
    assert part.tolist() == full[:31].tolist()


@pytest.mark.parametrize("name", NEW)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(25, 60))
def test_any_seed_works(name: str, seed: int, n: int) -> None:
    X = np.random.default_rng(seed % 1000).normal(size=(n, 5))
    sel = SELECTORS[name](seed=seed, budget=n // 3).fit(X, initial=0.1)
    n_init = max(1, round(0.1 * n))
    assert len(sel.order_) == n_init + n // 3 == len(set(sel.order_.tolist()))


def test_a_name_with_parameters_is_that_variant() -> None:
    X = blobs(80, seed=30)
    name = "facility(diversity=0.5, k=7)"
    assert name in SELECTORS and name not in list(SELECTORS)
    cls = SELECTORS[name]
    assert cls is SELECTORS[name] and issubclass(cls, FacilitySelector) and cls.name == name
    sel = cls(seed=2, budget=10)
    assert (sel.k, sel.diversity) == (7, 0.5)
    ref = FacilitySelector(seed=2, budget=10, k=7, diversity=0.5).fit(X, initial=[1]).order_
    assert np.array_equal(sel.fit(X, initial=[1]).order_, ref)
    assert sel.result_.method == name
    assert cls(k=3).k == 3  # an explicit argument still wins
    for bad in ("facility(depth=2)", "facility(k=two)", "coreset(k=2)", "facility(k=2"):
        assert bad not in SELECTORS
        with pytest.raises(EnrichError):
            SELECTORS[bad]


def test_registry_params_match_the_classes() -> None:
    for name, spec in STRATEGIES.items():
        sig = inspect.signature(SELECTORS[name].__init__)
        declared = {p.name: p.default for p in spec.params}
        actual = {
            k: v.default for k, v in sig.parameters.items() if k not in ("self", "budget", "seed")
        }
        if name == "enrich":
            continue  # metric and method are API-only (precomputed matrices, engine choice)
        assert declared == actual, name
        assert SELECTORS[name].name == name


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("typiclust", {"k": 0}, "typiclust: k=0"),
        ("typiclust", {"growth": 1.0}, "growth=1.0"),
        ("typiclust", {"max_clusters": 2.5}, "max_clusters=2.5"),
        ("probcover", {"delta": 0.0}, "delta=0.0"),
        ("probcover", {"delta": 3.0}, "delta=3.0"),
        ("probcover", {"purity": 1.5}, "purity=1.5"),
        ("probcover", {"n_clusters": 500}, "n_clusters=500 is more than the N=40"),
        ("probcover", {"max_degree": 0}, "max_degree=0"),
        ("facility", {"diversity": 1.0}, "diversity=1.0"),
        ("facility", {"k": -1}, "k=-1"),
        ("enrich_dense", {"outlier_fraction": -0.1}, "outlier_fraction=-0.1"),
        ("typiclust", {"budget": 40}, "budget=40 is larger"),
    ],
)
def test_bad_parameters_are_one_clear_error(name: str, params: dict, match: str) -> None:
    with pytest.raises(EnrichError, match=match.replace("(", r"\(").replace(".", r"\.")):
        SELECTORS[name](**params).fit(gaussian(40, 4), initial=[0])


@pytest.mark.parametrize("name", NEW)
def test_bad_embeddings_are_rejected(name: str) -> None:
    X = gaussian(30, 4)
    X[3, 1] = np.nan
    with pytest.raises(EnrichError, match="NaN"):
        SELECTORS[name]().fit(X)


# --------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("name", NEW)
def test_cli_rank_with_each_strategy(tmp_path: Path, name: str) -> None:
    emb = tmp_path / "e.npy"
    np.save(emb, clustered(200, 8, seed=2))
    out = tmp_path / "order.csv"
    assert main(["rank", "-e", str(emb), "--strategy", name, "--initial", "4", "-o", str(out)]) == 0
    t = pd.read_csv(out)
    assert list(t.columns) == ["rank", "id", "max_similarity_at_pick", "initial"]
    assert sorted(t["id"]) == list(range(200)) and t["initial"].sum() == 4
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["strategy"] == name and meta["params"] == {
        p.name: p.default for p in STRATEGIES[name].params
    }
    api = SELECTORS[name](seed=0).fit(np.load(emb), initial=4).order_
    assert t["id"].tolist() == api.tolist()


def test_cli_rank_params(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emb = tmp_path / "e.npy"
    np.save(emb, clustered(120, 8, seed=3))
    out = tmp_path / "o.csv"
    argv = ["rank", "-e", str(emb), "--strategy", "facility", "-o", str(out), "--budget", "10"]
    assert main([*argv, "--param", "diversity=0.3", "--param", "k=5"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["params"] == {"k": 5, "diversity": 0.3}
    api = FacilitySelector(seed=0, budget=10, k=5, diversity=0.3).fit(np.load(emb)).order_
    assert pd.read_csv(out)["id"].tolist() == api.tolist()
    out.unlink()
    out.with_suffix(".json").unlink()
    for extra, match in [
        (
            ["--param", "depth=3"],
            "not a parameter of strategy facility (its parameters: k, diversity)",
        ),
        (["--param", "k=many"], "--param k='many' for strategy facility: expected a whole number"),
        (["--param", "k"], "expected KEY=VALUE"),
        (["--param", "diversity=2"], "diversity=2.0: expected a number in [0, 1)"),
    ]:
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    assert (
        main(["rank", "-e", str(emb), "--strategy", "random", "-o", str(out), "--param", "k=3"])
        == 2
    )
    assert "its parameters: none" in capsys.readouterr().err


def test_cli_unknown_strategy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rank", "-e", "x.npy", "--strategy", "coreset", "-o", str(tmp_path / "o.csv")])
    assert exc.value.code == 2
    assert "invalid choice: 'coreset'" in capsys.readouterr().err


def test_rank_help_lists_strategies_without_numba() -> None:
    code = (
        "import sys\nfrom enrich.cli import main\n"
        "try:\n    main(['rank', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('numba' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "False False"
    for name in ALL:
        assert f"  {name}: " in out
    assert "diversity=0.0" in out and "delta=None" in out


# --------------------------------------------------------------------------- benchmark
@pytest.mark.slow
def test_protocol_runs_every_registered_strategy(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    import torch

    from enrich.evaluate.data import BenchmarkData
    from enrich.evaluate.protocol import run_benchmark

    rng = np.random.default_rng(0)
    n = 90
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 16, 16)).astype(np.float32)
    x[y == 1, 4:12, 4:12] += 2.0
    vec = x.reshape(n, -1)[:, ::8] + rng.normal(scale=0.1, size=(n, 32))
    data = BenchmarkData.from_arrays(x, labels=y, vectors=vec)
    cfg = {
        "strategies": [*ALL, "probcover(n_clusters=2)"],
        "initializations": 1,
        "models": 1,
        "initial": 6,
        "sizes": [6, 12, 20],
        "full": False,
        "model": {"input_size": 16, "block_inplanes": [4, 8, 8, 8], "layers": [1, 1, 1, 1]},
        "train": {"epochs": 1, "patience": None, "batch_size": 16},
        "split": {"test_fraction": 0.3},
    }
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_benchmark(data, cfg, tmp_path, progress=False, report=False)
    finally:
        torch.set_num_threads(before)
    subsets = pd.read_parquet(tmp_path / "subsets.parquet")
    assert set(subsets["strategy"]) == {*ALL, "probcover(n_clusters=2)"}
    first = subsets[subsets["size"] == 6].groupby("strategy")["id"].apply(frozenset)
    assert first.nunique() == 1  # every strategy starts from the same seed subset
    for name, grp in subsets.groupby("strategy"):
        sets = [set(g["id"]) for _, g in grp.groupby("size")]
        assert [len(s_) for s_ in sets] == [6, 12, 20], name
        assert sets[0] <= sets[1] <= sets[2], name
    rows = pd.read_csv(tmp_path / "results.csv")
    assert set(rows["strategy"]) == {*ALL, "probcover(n_clusters=2)"}
    assert (rows["status"] == "ok").all()
    # the user-facing verdict over all of them
    from enrich.evaluate.verdict import write_verdict

    verdict = write_verdict(tmp_path, n_boot=50)
    assert verdict is not None
    saved = json.loads((tmp_path / "verdict.json").read_text())
    assert saved["headline"] == verdict.headline
    assert saved["excluded_sizes"] == [6]  # the shared seed subset compares nothing
    variants = {*ALL, "probcover(n_clusters=2)"} - {"random"}
    assert {c["strategy"] for c in saved["comparisons"]} == variants
    assert {p["strategy"] for p in saved["pooled"]} == variants
    assert {e["size"] for e in saved["label_efficiency"]} == {12, 20}
    assert (tmp_path / "label_efficiency.png").stat().st_size > 1000


def test_protocol_rejects_an_unknown_strategy(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from enrich.evaluate.data import BenchmarkData
    from enrich.evaluate.protocol import run_benchmark

    rng = np.random.default_rng(0)
    data = BenchmarkData.from_arrays(
        rng.normal(size=(40, 8, 8)).astype(np.float32),
        labels=np.arange(40) % 2,
        vectors=rng.normal(size=(40, 6)),
    )
    out = tmp_path / "run"
    with pytest.raises(EnrichError, match="strategies: unknown coreset; registered: enrich"):
        run_benchmark(data, {"strategies": ["enrich", "coreset"]}, out, progress=False)
    assert not out.exists()


def _tiny_workspace(tmp_path: Path) -> Path:
    from PIL import Image

    from enrich.embeddings import Embeddings
    from enrich.io import discover, read_frames
    from enrich.preprocess import Preprocess
    from enrich.workspace import Workspace

    src = tmp_path / "src" / "patient_1"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        base = (i % 4) * 60
        img = np.clip(base + rng.normal(scale=20, size=(12, 12)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(src / f"img_{i:02d}.png")
    found = discover(tmp_path / "src")
    ws = Workspace.create(tmp_path / "ws")
    ids, vecs = [], []
    for image_id, img in read_frames(found.manifest, preprocess=Preprocess(size=8)):
        ids.append(image_id)
        vecs.append(img.ravel() + 1e-3)
    ws.write_embeddings(Embeddings(np.array(ids), np.stack(vecs).astype(np.float32)))
    ws.write_manifest(found.manifest)
    return ws.path


def test_cli_rank_from_a_workspace(tmp_path: Path) -> None:
    ws = _tiny_workspace(tmp_path)
    for name in ("typiclust", "probcover"):
        assert main(["rank", "-w", str(ws), "--strategy", name, "--budget", "10"]) == 0
        t = pd.read_csv(ws / "runs" / "rank" / "order.csv")
        assert list(t.columns[:4]) == ["rank", "id", "max_similarity_at_pick", "initial"]
        assert {"path"} <= set(t.columns) and len(t) == 11
        assert t["path"].str.contains("img_").all()


def _fake_results(out: Path) -> None:
    from enrich.evaluate.results import RESULT_COLUMNS

    rng = np.random.default_rng(0)
    rows = []
    for s, shift in (("random", 0.0), ("typiclust", 0.05), ("enrich", -0.01)):
        for size in (10, 20, 40):
            for m in range(6):
                v = 0.6 + size / 200 + shift + 0.01 * rng.normal()
                rows.append((s, 0, size, size / 100, m, m, "auc", v, "ok", "", 1.0))
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).to_csv(out / "results.csv", index=False)


def test_cli_benchmark_prints_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import types

    import enrich.evaluate.protocol as protocol

    ws = _tiny_workspace(tmp_path)
    out = tmp_path / "run"

    def fake_run(ws_path, cfg, out_dir, **kw):  # the models are not the point here
        _fake_results(Path(out_dir))
        return types.SimpleNamespace(n_ok=54, n_failed=0, n_trained=54, seconds=1.0, report=None)

    monkeypatch.setattr(protocol, "run_benchmark", fake_run)
    assert main(["benchmark", "-w", str(ws), "--config", "quick", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "verdict: Label with typiclust" in stdout
    assert json.loads((out / "verdict.json").read_text())["strategy"] == "typiclust"
    assert (out / "label_efficiency.png").is_file()

    import enrich.evaluate.verdict as verdict

    def broken(run_dir):
        raise EnrichError("results.csv: column 'value' is not numeric")

    monkeypatch.setattr(verdict, "write_verdict", broken)
    assert main(["benchmark", "-w", str(ws), "--config", "quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: no verdict: results.csv: column 'value' is not numeric" in captured.err
    assert "verdict:" not in captured.out
