from __future__ import annotations

import numpy as np
import pytest

from enrich.errors import EnrichError
from enrich.redundancy import near_duplicate_groups, plot_cdf, redundancy

from _data import clustered, gaussian
from _reference import unit64


def dense_reference(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    U = unit64(X)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    return S.max(axis=1), S.argmax(axis=1), S


@pytest.mark.parametrize("make", [clustered, gaussian], ids=["clustered", "gaussian"])
@pytest.mark.parametrize("block", [64, 699, 1024])  # 699: the last tile is one row
def test_matches_dense_reference(make, block: int) -> None:
    X = make(700, 24, seed=5)
    r = redundancy(X, block=block)
    best, _, S = dense_reference(X)
    np.testing.assert_allclose(r.max_similarity, best, atol=2e-6)
    # the reported nearest image really is (one of) the most similar
    np.testing.assert_allclose(S[np.arange(len(X)), r.nearest], best, atol=2e-6)
    assert (r.nearest != np.arange(len(X))).all()


def fixed_workers(monkeypatch, k: int) -> None:
    from contextlib import contextmanager

    import enrich.redundancy as mod

    @contextmanager
    def fixed():
        yield k

    monkeypatch.setattr(mod, "_blas_workers", fixed)


def with_copies() -> tuple[np.ndarray, np.ndarray]:
    """Clustered rows plus exact copies (X[::7]), copies scaled by 4 (exactly the same
    direction in float32) and by 3 (the same direction up to float32 rounding of the input).
    Returns X and, for each row, the lowest index of the rows identical to it up to a power
    of two (the expected nearest image of a copy)."""
    X = clustered(300, 16, seed=2)
    X = np.vstack([X, X[::7], X[5::11] * 4.0, X[3::13] * 3.0])
    source = np.r_[np.arange(300), np.arange(0, 300, 7), np.arange(5, 300, 11)]
    lowest = {}
    for row, src in enumerate(source):
        lowest.setdefault(int(src), []).append(row)
    # rows with no copy get len(source): "no expectation"
    return X, np.array(
        [
            min([r for r in lowest[int(s)] if r != i], default=len(source))
            for i, s in enumerate(source)
        ]
    )


def leader_reference(S: np.ndarray, thr: float) -> np.ndarray:
    """Groups around representatives, the slow obvious way, on a dense matrix."""
    rep = np.full(len(S), -1)
    for i in range(len(S)):
        if rep[i] == -1:
            rep[i] = i
            for j in range(i + 1, len(S)):
                if rep[j] == -1 and S[i, j] >= thr:
                    rep[j] = i
    return rep


def same_partition(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


@pytest.mark.parametrize("method", ["representative", "components"])
@pytest.mark.parametrize("workers", [2, 3, 7])
def test_any_number_of_workers_gives_the_same_answer(monkeypatch, workers: int, method) -> None:
    # Exact duplicates (ties on value across tiles handled by different workers) and
    # near-duplicate chains that span tiles: maxima, nearest ids and groups must not depend on
    # how the tiles were shared out.
    X, lowest_copy = with_copies()
    fixed_workers(monkeypatch, 1)
    one = redundancy(X, block=32, group_threshold=0.98, group_method=method)
    fixed_workers(monkeypatch, workers)
    many = redundancy(X, block=32, group_threshold=0.98, group_method=method)
    assert one.info["workers"] == 1 and many.info["workers"] == workers
    np.testing.assert_array_equal(many.max_similarity, one.max_similarity)
    np.testing.assert_array_equal(many.nearest, one.nearest)
    np.testing.assert_array_equal(many.group, one.group)
    best, _, S = dense_reference(X)
    np.testing.assert_allclose(one.max_similarity, best, atol=2e-6)
    # copies (exact, or scaled by a power of two) point at the lowest-index identical row
    n_exact = len(lowest_copy)
    np.testing.assert_array_equal(
        one.nearest[:n_exact][lowest_copy < n_exact], lowest_copy[lowest_copy < n_exact]
    )
    # a copy scaled by 3 is the same direction up to rounding: one of its most similar rows
    scaled = np.arange(n_exact, len(X))
    np.testing.assert_allclose(S[scaled, one.nearest[scaled]], best[scaled], atol=2e-6)
    if method == "components":  # groups equal the connected components of the dense graph
        from scipy.sparse.csgraph import connected_components

        _, labels = connected_components((S >= 0.98).astype(np.int8), directed=False)
        same_partition(one.group, labels)


def test_float32_rounding_does_not_change_the_answer(monkeypatch) -> None:
    # Another CPU's BLAS rounds the float32 tiles differently. Emulate it by perturbing every
    # tile entry by up to 4 float32 ulps: maxima, nearest ids and groups must not move, even
    # with exact copies (ties) and rows that differ from a copy by one ulp.
    import enrich.redundancy as mod

    X, _ = with_copies()
    X = np.vstack([X, X[10:20]])
    X[-10:, 0] = np.nextafter(X[-10:, 0], np.float32(np.inf))  # one ulp off a copy
    ref = {
        m: redundancy(X, block=48, group_threshold=0.97, group_method=m)
        for m in ("representative", "components")
    }
    rng = np.random.default_rng(0)
    exact = mod._tile_product

    def noisy(A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
        exact(A, B, out)
        out *= 1 + rng.uniform(-4, 4, size=out.shape).astype(np.float32) * np.float32(2**-24)

    monkeypatch.setattr(mod, "_tile_product", noisy)
    for block in (48, 31):
        for method, r in ref.items():
            got = redundancy(X, block=block, group_threshold=0.97, group_method=method)
            np.testing.assert_array_equal(got.max_similarity, r.max_similarity)
            np.testing.assert_array_equal(got.nearest, r.nearest)
            np.testing.assert_array_equal(got.group, r.group)


def test_ties_go_to_lowest_index_and_self_is_excluded() -> None:
    X = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    r = redundancy(X, block=2)
    assert r.nearest.tolist()[:3] == [1, 0, 0]
    assert r.max_similarity[:3].tolist() == [1.0, 1.0, 1.0]


def test_components_chain_representative_groups_do_not() -> None:
    # a-b and c-d are mutual nearest neighbours; b-c is above the threshold too,
    # so all four form one component; e is far away. Around representatives: a takes b
    # (5 degrees) but not c (12 degrees), so c starts its own group with d.
    ang = np.deg2rad([0.0, 5.0, 12.0, 17.0, 90.0])
    X = np.c_[np.cos(ang), np.sin(ang)]
    thr = float(np.cos(np.deg2rad(7.5)))
    r = redundancy(X, group_threshold=thr, block=2, group_method="components")
    assert [g.tolist() for g in r.groups()] == [[0, 1, 2, 3]]
    r = redundancy(X, group_threshold=thr, block=2)
    assert r.group_method == "representative"
    assert [g.tolist() for g in r.groups()] == [[0, 1], [2, 3]]
    assert near_duplicate_groups(X, float(np.cos(np.deg2rad(6.0))), method="components") == [
        pytest.approx(np.array([0, 1])),
        pytest.approx(np.array([2, 3])),
    ]


def test_a_slow_sweep_is_one_component_but_many_groups() -> None:
    # 189 slices of a volume, each 1 degree from the next: one chained component, while
    # representative groups stay within the threshold of their representative.
    ang = np.deg2rad(np.arange(189) * 1.0)
    X = np.c_[np.cos(ang), np.sin(ang), np.ones(189) * 0.1]
    thr = 0.99
    comp = redundancy(X, group_threshold=thr, block=16, group_method="components")
    assert [len(g) for g in comp.groups()] == [189]
    rep = redundancy(X, group_threshold=thr, block=16)
    assert 10 < len(rep.groups()) < 189
    S = dense_reference(X)[2]
    np.testing.assert_array_equal(rep.group, leader_reference(S, thr))


@pytest.mark.parametrize("make", [clustered, gaussian], ids=["clustered", "gaussian"])
@pytest.mark.parametrize("block", [37, 1024])
def test_representative_groups_match_slow_reference(make, block: int) -> None:
    X = make(600, 8, seed=4)
    _, _, S = dense_reference(X)
    off = S[~np.eye(len(S), dtype=bool)]
    # a threshold in the widest gap between pair similarities near the top 0.5%, so that
    # float rounding cannot move a pair across it (the test is exact by construction)
    q = np.quantile(off, [0.99, 0.998])
    near = np.sort(off[(off > q[0]) & (off < q[1])])
    k = int(np.argmax(np.diff(near)))
    thr = float((near[k] + near[k + 1]) / 2)
    assert near[k + 1] - near[k] > 1e-6
    r = redundancy(X, group_threshold=thr, block=block)
    np.testing.assert_array_equal(r.group, leader_reference(S, thr))
    # every member is at or above the threshold to its representative; no group chains
    members = np.flatnonzero(r.group != np.arange(len(X)))
    assert len(members) > 20
    assert (S[members, r.group[members]] >= thr).all()
    assert (r.group[r.group] == r.group).all()  # a representative represents itself
    s = r.summary()["near_duplicates"]
    assert s["method"] == "representative" and s["threshold"] == thr


def test_summary_fractions() -> None:
    X = clustered(500, 16, seed=1)
    r = redundancy(X)
    s = r.summary()
    m = r.max_similarity
    assert s["n_images"] == 500
    assert s["fraction_above"]["0.9"] == pytest.approx((m > 0.9).mean())
    assert s["fraction_below"]["0.4"] == pytest.approx((m < 0.4).mean())
    assert s["quantiles"]["0.5"] == pytest.approx(float(np.median(m)))


def test_bad_input() -> None:
    with pytest.raises(EnrichError, match="N=1"):
        redundancy(np.ones((1, 4)))
    with pytest.raises(EnrichError, match="group_threshold=2"):
        redundancy(np.eye(3), group_threshold=2)
    with pytest.raises(EnrichError, match="NaN"):
        redundancy(np.array([[1.0, np.inf], [1.0, 0.0]]))
    with pytest.raises(EnrichError, match="group_method='cliques': expected one of"):
        redundancy(np.eye(3), group_method="cliques")


def test_plot_cdf_overlays_datasets() -> None:
    fig = plot_cdf({"a": redundancy(clustered(200, 8)), "b": np.linspace(0, 1, 50)})
    ax = fig.axes[0]
    assert len(ax.get_lines()) >= 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (N=200)", "b (N=50)"]


def test_blas_threads_are_shared_out_among_workers() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import enrich.redundancy as mod

    def blas_threads() -> set[int]:
        info = threadpoolctl.threadpool_info()
        return {int(i["num_threads"]) for i in info if i["user_api"] == "blas"}

    if not blas_threads():
        pytest.skip("threadpoolctl sees no BLAS library")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        with mod._blas_workers() as workers:
            assert workers == 1
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with mod._blas_workers() as workers:
            assert workers == 2 and blas_threads() == {1}
        assert blas_threads() == {2}  # restored afterwards


def test_cli_groups_say_their_method(tmp_path) -> None:
    import json

    import pandas as pd

    from enrich.cli import main

    ang = np.deg2rad(np.arange(40) * 1.0)  # a slow sweep: one chained component
    X = np.c_[np.cos(ang), np.sin(ang), np.full(40, 0.1)]
    np.savez(tmp_path / "e.npz", ids=np.array([f"s{i:02d}" for i in range(40)]), vectors=X)
    tables = {}
    for method in ("representative", "components"):
        out = tmp_path / method
        args = ["redundancy", "-e", str(tmp_path / "e.npz"), "--threshold", "0.99", "-o", str(out)]
        assert main([*args, "--groups", method] if method == "components" else args) == 0
        t = pd.read_csv(out / "redundancy.csv")
        assert (t["group_method"] == method).all()
        summary = json.loads((out / "summary.json").read_text())["datasets"]["e"]
        assert summary["near_duplicates"]["method"] == method
        assert summary["near_duplicates"]["n_groups"] == t["duplicate_group"].max() + 1
        tables[method] = t
    assert (tables["components"]["duplicate_group"] == 0).all()
    rep = tables["representative"]
    assert rep["duplicate_group"].nunique() > 3
    # each member is >= the threshold to its group's first (lowest) image, the representative
    for _, g in rep[rep["duplicate_group"] >= 0].groupby("duplicate_group"):
        k = [int(i[1:]) for i in g["id"]]
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        assert (U[k] @ U[min(k)] >= 0.99).all()


def test_extreme_magnitudes_api_and_cli(tmp_path) -> None:
    # scaling by powers of two near 1e-25, 1e19, 1e20 is exact: nothing may change
    import pandas as pd

    from enrich.cli import main

    X = clustered(300, 16, seed=6)
    ref = redundancy(X, group_threshold=0.97)
    scales = np.float32([1.0, 2.0**-83, 2.0**63, 2.0**66])
    for Y in [X * s for s in scales[1:]] + [X * scales[np.arange(len(X)) % 4, None]]:
        r = redundancy(Y, group_threshold=0.97)
        np.testing.assert_array_equal(r.max_similarity, ref.max_similarity)
        np.testing.assert_array_equal(r.nearest, ref.nearest)
        np.testing.assert_array_equal(r.group, ref.group)
    tables = []
    for k, s in enumerate(scales):
        np.save(tmp_path / f"e{k}.npy", X * s)
        assert (
            main(["redundancy", "-e", str(tmp_path / f"e{k}.npy"), "-o", str(tmp_path / f"r{k}")])
            == 0
        )
        tables.append(pd.read_csv(tmp_path / f"r{k}" / "redundancy.csv"))
    assert tables[0]["max_similarity"].notna().all()
    for t in tables[1:]:
        pd.testing.assert_frame_equal(t, tables[0])
