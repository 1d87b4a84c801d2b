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
@pytest.mark.parametrize("block", [64, 1024])
def test_matches_dense_reference(make, block: int) -> None:
    X = make(700, 24, seed=5)
    r = redundancy(X, block=block)
    best, _, S = dense_reference(X)
    np.testing.assert_allclose(r.max_similarity, best, atol=2e-6)
    # the reported nearest image really is (one of) the most similar
    np.testing.assert_allclose(S[np.arange(len(X)), r.nearest], best, atol=2e-6)
    assert (r.nearest != np.arange(len(X))).all()


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_any_number_of_workers_gives_the_same_answer(monkeypatch, workers: int) -> None:
    # Exact duplicates (ties on value across tiles handled by different workers) and
    # near-duplicate chains that span tiles: maxima, nearest ids and groups must not depend on
    # how the tiles were shared out.
    from contextlib import contextmanager

    import enrich.redundancy as mod

    X = clustered(300, 16, seed=2)
    X = np.vstack([X, X[::7], X[5::11] * 3.0])  # duplicates, some scaled (same direction)

    @contextmanager
    def fixed(k: int):
        yield k

    monkeypatch.setattr(mod, "_blas_workers", lambda: fixed(1))
    one = redundancy(X, block=32, group_threshold=0.98)
    monkeypatch.setattr(mod, "_blas_workers", lambda: fixed(workers))
    many = redundancy(X, block=32, group_threshold=0.98)
    assert one.info["workers"] == 1 and many.info["workers"] == workers
    np.testing.assert_array_equal(many.max_similarity, one.max_similarity)
    np.testing.assert_array_equal(many.nearest, one.nearest)
    np.testing.assert_array_equal(many.group, one.group)
    best, _, S = dense_reference(X)
    np.testing.assert_allclose(one.max_similarity, best, atol=2e-6)
    # duplicates of an earlier row point at the lowest-index copy
    assert (one.nearest[300:343] == np.arange(0, 300, 7)).all()
    # groups equal the connected components of the dense graph
    from scipy.sparse.csgraph import connected_components

    A = (S >= 0.98).astype(np.int8)
    _, labels = connected_components(A, directed=False)
    same = labels[:, None] == labels[None, :]
    np.testing.assert_array_equal(same, one.group[:, None] == one.group[None, :])


def test_ties_go_to_lowest_index_and_self_is_excluded() -> None:
    X = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    r = redundancy(X, block=2)
    assert r.nearest.tolist()[:3] == [1, 0, 0]
    assert r.max_similarity[:3].tolist() == [1.0, 1.0, 1.0]


def test_groups_are_connected_components_not_just_nearest_pairs() -> None:
    # a-b and c-d are mutual nearest neighbours; b-c is above the threshold too,
    # so all four form one group; e is far away.
    ang = np.deg2rad([0.0, 5.0, 12.0, 17.0, 90.0])
    X = np.c_[np.cos(ang), np.sin(ang)]
    r = redundancy(X, group_threshold=float(np.cos(np.deg2rad(7.5))), block=2)
    assert [g.tolist() for g in r.groups()] == [[0, 1, 2, 3]]
    assert near_duplicate_groups(X, float(np.cos(np.deg2rad(6.0)))) == [
        pytest.approx(np.array([0, 1])),
        pytest.approx(np.array([2, 3])),
    ]


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
