"""Statistics of a benchmark run (enrich.evaluate.stats): hand-computed values, scipy, and
synthetic results tables whose answer is known by construction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from enrich.errors import EnrichError
from enrich.evaluate import stats as S

FULL_VALUES = np.array([0.980, 0.982, 0.984, 0.986, 0.988, 0.990, 0.992, 0.994, 0.996, 0.998])
N_TRAIN = 1000


def _rows(strategy: str, size: int, values: np.ndarray, *, inits: int = 2, metric: str = "auc"):
    """One row per value, spread over `inits` initializations."""
    per = math.ceil(len(values) / inits)
    return [
        {
            "strategy": strategy,
            "init": i // per,
            "size": size,
            "fraction": size / N_TRAIN,
            "model": i % per,
            "seed": i,
            "metric": metric,
            "value": float(v),
            "status": "ok",
            "error": "",
            "wall_s": 1.0,
        }
        for i, v in enumerate(values)
    ]


def _table(spec: dict[str, dict[int, str | np.ndarray]]) -> pd.DataFrame:
    """Build a results table: per strategy and size, "same" (exactly the full-set values,
    p = 1), "worse" (all below every full value), "better" (all above) or an array."""
    rows = _rows(S.FULL, N_TRAIN, FULL_VALUES, inits=1)
    for name, sizes in spec.items():
        for size, what in sizes.items():
            if isinstance(what, np.ndarray):
                values = what
            elif what == "same":
                values = FULL_VALUES.copy()
            elif what == "worse":
                values = FULL_VALUES - 0.1
            elif what == "better":
                values = FULL_VALUES + 0.1
            else:
                raise AssertionError(what)
            rows += _rows(name, size, values)
    return S.check_results(pd.DataFrame(rows))


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.9, "ns"),
        (0.0500001, "ns"),
        (0.05, "*"),
        (0.0100001, "*"),
        (0.01, "**"),
        (0.001, "***"),
        (0.0009, "***"),
        (0.0001, "****"),
        (1e-12, "****"),
        (float("nan"), ""),
    ],
)
def test_stars_follow_the_paper(p: float, expected: str) -> None:
    assert S.stars(p) == expected


def test_mwu_hand_computed() -> None:
    # Perfect separation, n = 4 vs 4: U = 0 and exact two-sided p = 2 / C(8, 4) = 2/70.
    r = S.mwu([1, 2, 3, 4], [5, 6, 7, 8])
    assert r.statistic == 0.0
    assert r.pvalue == pytest.approx(2 / 70)
    # x = [1, 3, 5], y = [2, 4, 6]: U_x = #(x > y) = 0 + 1 + 2 = 3. Of the 20 orderings,
    # U <= 3 in 1 + 1 + 2 + 3 = 7, so the exact two-sided p is 2 * 7/20 = 0.7.
    r = S.mwu([1, 3, 5], [2, 4, 6])
    assert r.statistic == 3.0
    assert r.pvalue == pytest.approx(0.7)


def test_mwu_matches_scipy_on_fixed_arrays() -> None:
    rng = np.random.default_rng(7)
    for n1, n2 in [(3, 5), (10, 10), (30, 30), (12, 40)]:
        x = rng.normal(0.9, 0.01, n1).round(3)  # rounding makes ties: the asymptotic path
        y = rng.normal(0.905, 0.01, n2).round(3)
        ref = mannwhitneyu(x, y, alternative="two-sided")
        got = S.mwu(x, y)
        assert got.statistic == pytest.approx(ref.statistic)
        assert got.pvalue == pytest.approx(ref.pvalue)


def test_mwu_degenerate_inputs() -> None:
    assert S.mwu([0.5, 0.5], [0.5, 0.5, 0.5]).pvalue == 1.0
    assert math.isnan(S.mwu([], [1.0]).pvalue)


@pytest.mark.parametrize(("n1", "n2"), [(2, 2), (3, 4), (4, 4), (5, 3), (10, 10)])
def test_min_attainable_p_is_what_perfect_separation_gives(n1: int, n2: int) -> None:
    x = np.arange(n1, dtype=float)
    y = np.arange(n2, dtype=float) + 100
    exact = mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue
    assert S.min_attainable_p(n1, n2) == pytest.approx(exact)


@settings(max_examples=40, deadline=None)
@given(
    x=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=15),
    y=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=15),
)
def test_mwu_is_symmetric_and_a_probability(x: list[float], y: list[float]) -> None:
    a, b = S.mwu(x, y), S.mwu(y, x)
    assert 0.0 <= a.pvalue <= 1.0
    assert a.pvalue == pytest.approx(b.pvalue)
    assert a.statistic + b.statistic == pytest.approx(len(x) * len(y))


# --------------------------------------------------------------------------- the table


def test_check_results_errors(tmp_path: Path) -> None:
    with pytest.raises(EnrichError, match="lacks column"):
        S.check_results(pd.DataFrame({"strategy": ["a"], "size": [1], "metric": ["auc"]}))
    with pytest.raises(EnrichError, match="no rows"):
        S.check_results(pd.DataFrame(columns=list(S.RESULT_COLUMNS)))
    bad = pd.DataFrame(
        {"strategy": ["a"], "size": [1], "metric": ["auc"], "value": [1.0], "status": ["meh"]}
    )
    with pytest.raises(EnrichError, match="unknown status meh"):
        S.check_results(bad)
    with pytest.raises(EnrichError, match="size must be"):
        S.check_results(bad.assign(status="ok", size=-3))
    with pytest.raises(EnrichError, match="not a benchmark run"):
        S.read_results(tmp_path)
    (tmp_path / "results.csv").write_text("")
    with pytest.raises(EnrichError, match="is empty"):
        S.read_results(tmp_path)
    (tmp_path / "results.csv").write_text(",".join(S.RESULT_COLUMNS) + "\n")
    with pytest.raises(EnrichError, match="no rows"):
        S.read_results(tmp_path)
    with pytest.raises(EnrichError, match="metric 'dice'"):
        S.choose_metric(_table({"enrich": {100: "same"}}), "dice")


def test_failed_rows_are_counted_and_excluded(tmp_path: Path) -> None:
    rows = _rows("enrich", 100, np.array([0.5, 0.7, 0.9]))
    rows[0].update(status="failed", error="NaN loss", value=float("nan"))
    rows[1].update(value=float("nan"))  # 'ok' without a finite value cannot be used either
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    t = S.read_results(tmp_path)
    d = S.describe(t)
    assert d["n"].tolist() == [1]
    assert d["mean"].tolist() == [0.9]
    f = S.failures(t)
    assert f["n_failed"].sum() == 2
    assert set(f["error"]) == {"NaN loss", "non-finite metric value"}


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    rows = _rows("enrich", 100, np.array([0.5, 0.7, 0.9]))
    text = pd.DataFrame(rows).to_csv(index=False)
    (tmp_path / "results.csv").write_text(text + "enrich,0,100,0.1,9,9,auc,0.93")  # mid-append
    t = S.read_results(tmp_path)
    assert len(t) == 3 and S.failures(t).empty


def test_describe_hand_computed() -> None:
    t = _table({"enrich": {100: np.array([0.8, 0.9, 1.0])}})
    d = S.describe(t).set_index("strategy")
    assert d.loc["enrich", "n"] == 3
    assert d.loc["enrich", "mean"] == pytest.approx(0.9)
    assert d.loc["enrich", "std"] == pytest.approx(0.1)  # ddof = 1
    assert d.loc["enrich", "fraction"] == pytest.approx(0.1)
    assert d.loc[S.FULL, "mean"] == pytest.approx(FULL_VALUES.mean())


def test_compare_to_baseline_matches_scipy_per_size() -> None:
    rng = np.random.default_rng(3)
    spec = {
        name: {size: rng.normal(0.9 + 0.01 * (name == "enrich"), 0.01, 10) for size in (100, 200)}
        for name in ("enrich", "random", "kcenter")
    }
    t = _table(spec)
    c = S.compare_to_baseline(t, baseline="random")
    assert sorted(set(c["strategy"])) == ["enrich", "kcenter"]
    for r in S.records(c):
        ref = mannwhitneyu(spec[r["strategy"]][r["size"]], spec["random"][r["size"]])
        assert r["p"] == pytest.approx(ref.pvalue)
        assert r["U"] == pytest.approx(ref.statistic)
        assert r["stars"] == S.stars(ref.pvalue)
        assert r["n"] == r["n_baseline"] == 10


# --------------------------------------------------------------------------- vs the full set


def test_strategy_equal_to_full_from_size_x_on() -> None:
    t = _table(
        {
            "enrich": {100: "worse", 200: "worse", 400: "same", 600: "same", 800: "same"},
            "random": {100: "worse", 200: "worse", 400: "worse", 600: "worse", 800: "same"},
        }
    )
    c = S.compare_to_full(t)
    same = c.loc[c["indistinguishable"]]
    assert set(zip(same["strategy"], same["size"], strict=True)) == {
        ("enrich", 400),
        ("enrich", 600),
        ("enrich", 800),
        ("random", 800),
    }
    assert (c.loc[~c["indistinguishable"], "direction"] == "worse").all()
    assert not c["underpowered"].any()  # 10 vs 10 models can reach p ~ 1e-5
    eq = S.smallest_equivalent(t).set_index("strategy")
    assert eq.loc["enrich", "size"] == 400
    assert eq.loc["enrich", "fraction"] == pytest.approx(0.4)
    assert eq.loc["random", "size"] == 800
    assert bool(eq.loc["enrich", "reached"])


def test_first_vs_sustained_rule() -> None:
    # A lucky point at 200, then significantly worse at 400: 'first' takes 200, the
    # headline ('sustained') waits until it holds from 600 on; 'better' does not break it.
    t = _table({"enrich": {200: "same", 400: "worse", 600: "same", 800: "better"}})
    c = S.compare_to_full(t).set_index("size")
    assert c.loc[800, "direction"] == "better"
    assert not c.loc[800, "indistinguishable"]
    sustained = S.smallest_equivalent(t).iloc[0]
    first = S.smallest_equivalent(t, rule="first").iloc[0]
    assert sustained["size"] == 600 and sustained["first_size"] == 200
    assert first["size"] == 200 and first["sustained_size"] == 600
    with pytest.raises(EnrichError, match="rule="):
        S.smallest_equivalent(t, rule="last")  # type: ignore[arg-type]


def test_better_than_full_counts_for_the_headline() -> None:
    # Significantly better than the full set from 400 on: never "indistinguishable", but the
    # headline rule must not say "needs the full set".
    t = _table({"enrich": {200: "worse", 400: "better", 800: "same"}})
    eq = S.smallest_equivalent(t).iloc[0]
    assert eq["reached"] and eq["size"] == 400 and eq["direction"] == "better"
    first = S.smallest_equivalent(t, rule="first").iloc[0]
    assert first["size"] == 800 and first["direction"] == "same"  # the paper's red circle


def test_never_equivalent_needs_the_full_set() -> None:
    # Same at 400 but worse again at the largest size: never sustained.
    t = _table({"random": {200: "worse", 400: "same", 800: "worse"}})
    eq = S.smallest_equivalent(t).iloc[0]
    assert not eq["reached"]
    assert eq["size"] == N_TRAIN and eq["fraction"] == 1.0
    assert eq["first_size"] == 400
    times = S.labeling_time(t, seconds_per_image=3.0).iloc[0]
    assert times["hours_saved"] == 0.0
    assert times["hours_needed"] == pytest.approx(N_TRAIN * 3 / 3600)


def test_underpowered_comparisons_are_flagged() -> None:
    rows = _rows(S.FULL, N_TRAIN, np.array([0.95, 0.96]), inits=1)
    rows += _rows("enrich", 100, np.array([0.5, 0.6]))  # far worse, but n = 2 vs 2
    t = S.check_results(pd.DataFrame(rows))
    c = S.compare_to_full(t).iloc[0]
    assert c["p"] == pytest.approx(1 / 3)  # the smallest p a 2-vs-2 test can give
    # p > 0.05 from a test that cannot reach 0.05 is no evidence: never a match.
    assert c["underpowered"] and not c["indistinguishable"]
    assert c["direction"] == "cannot tell"
    eq = S.smallest_equivalent(t).iloc[0]
    assert not eq["reached"] and eq["cannot_tell"] and eq["underpowered"]
    assert math.isnan(eq["first_size"])
    lt = S.labeling_time(t, seconds_per_image=3.0).iloc[0]
    assert lt["hours_saved"] == 0.0 and lt["cannot_tell"]


def test_two_models_per_point_never_match_even_with_equal_values() -> None:
    # The run: 2 models per point and 2 full-set models, some values identical to the
    # full set's (p = 1). Every comparison is "cannot tell"; no size is reached.
    full = np.array([0.95, 0.96])
    rows = _rows(S.FULL, N_TRAIN, full, inits=1)
    for size in (50, 100, 200):
        rows += _rows("enrich", size, full.copy()) + _rows("random", size, full - 0.03)
    t = S.check_results(pd.DataFrame(rows))
    c = S.compare_to_full(t)
    assert set(c["direction"]) == {"cannot tell"} and not c["indistinguishable"].any()
    eq = S.smallest_equivalent(t)
    assert not eq["reached"].any() and eq["cannot_tell"].all()
    for rule in ("sustained", "first"):
        assert not S.smallest_equivalent(t, rule=rule)["reached"].any()
    assert (S.labeling_time(t, seconds_per_image=3.0)["hours_saved"] == 0).all()
    assert S.compare_to_baseline(t)["underpowered"].all()


def test_cannot_tell_only_when_untestable_points_could_change_the_answer() -> None:
    # Testable and worse at the largest size: the sustained rule fails whatever the
    # untestable small size would show, so the answer is "not reached", not "cannot tell".
    rows = _rows(S.FULL, N_TRAIN, FULL_VALUES, inits=1)
    rows += _rows("enrich", 100, np.array([0.99]), inits=1)  # 1 vs 10: min p = 0.18
    rows += _rows("enrich", 500, FULL_VALUES - 0.1)
    t = S.check_results(pd.DataFrame(rows))
    eq = S.smallest_equivalent(t).iloc[0]
    assert not eq["reached"] and not eq["cannot_tell"] and eq["underpowered"]
    # With the largest size a match, the sustained rule is met there: reached, at 500.
    rows[-10:] = _rows("enrich", 500, FULL_VALUES.copy())
    eq = S.smallest_equivalent(S.check_results(pd.DataFrame(rows))).iloc[0]
    assert eq["reached"] and eq["size"] == 500 and not eq["cannot_tell"]


@pytest.mark.parametrize(("n_other", "alpha"), [(None, 0.05), (None, 0.01), (2, 0.05), (10, 0.05)])
def test_models_needed_is_the_first_n_that_can_reach_alpha(n_other, alpha) -> None:
    k = S.models_needed(alpha, n_other=n_other)
    other = (lambda n: n) if n_other is None else (lambda n: n_other)
    assert S.min_attainable_p(k, other(k)) <= alpha < S.min_attainable_p(k - 1, other(k - 1))
    with pytest.raises(EnrichError, match="alpha"):
        S.models_needed(1.5)


def test_missing_models_counts_planned_minus_present() -> None:
    # Planned: 2 strategies × 2 sizes × (2 inits × 3 models) + 6 full = 30. Present: enrich
    # at 10 complete (one failed model counts as present), random at 10 has 2, nothing at 20,
    # 4 full models, one row repeated by a resumed run.
    rows = []
    for i in range(2):
        for m in range(3):
            rows.append(("enrich", i, 10, m, "ok" if m else "failed"))
            if m < 2:
                rows.append(("full", i, 100, m, "ok"))
    rows += [("random", 0, 10, 0, "ok"), ("random", 1, 10, 0, "ok"), ("random", 1, 10, 0, "ok")]
    t = S.check_results(
        pd.DataFrame(rows, columns=["strategy", "init", "size", "model", "status"]).assign(
            metric="auc", value=0.9
        )
    )
    miss = S.missing_models(
        t, strategies=["enrich", "random"], sizes=[10, 20], initializations=2, models=3
    )
    got = {
        (r["strategy"], "all" if r["strategy"] == "full" else int(r["size"])): (
            r["present"],
            r["missing"],
        )
        for r in S.records(miss)
    }
    assert got == {
        ("random", 10): (2, 4),
        ("enrich", 20): (0, 6),
        ("random", 20): (0, 6),
        ("full", "all"): (4, 2),
    }
    assert int(miss["missing"].sum()) == 18
    done = S.missing_models(t, strategies=["enrich"], sizes=[10], initializations=2, models=3)
    assert list(done["strategy"]) == ["full"]
    assert S.missing_models(
        t, strategies=["enrich"], sizes=[10], initializations=2, models=3, full=False
    ).empty


def test_no_full_models() -> None:
    rows = _rows("enrich", 100, np.array([0.5, 0.6]))
    t = S.check_results(pd.DataFrame(rows))
    assert S.compare_to_full(t).empty
    assert not S.smallest_equivalent(t)["reached"].any()
    with pytest.raises(EnrichError, match="training-set size"):
        S.labeling_time(t, seconds_per_image=3.0)


# --------------------------------------------------------------------------- Fig. 5


def test_pooled_z_scores_hand_computed() -> None:
    # size 10: a = [3, 5], b = [1, 3] -> mean 3, SD (ddof 0) sqrt(2): a -> [0, √2], b -> [-√2, 0]
    # size 20: the same pattern scaled ×10 -> the same z-scores.
    rows = _rows("a", 10, np.array([3.0, 5.0])) + _rows("b", 10, np.array([1.0, 3.0]))
    rows += _rows("a", 20, np.array([30.0, 50.0])) + _rows("b", 20, np.array([10.0, 30.0]))
    rows += _rows(S.FULL, N_TRAIN, np.array([100.0, 200.0]))  # never in the pooling
    t = S.check_results(pd.DataFrame(rows))
    pooled = S.pooled_comparison(t, baseline="b")
    assert pooled.sizes == (10, 20)
    v = pooled.values
    r2 = math.sqrt(2)
    assert sorted(v.loc[v["strategy"] == "a", "z"]) == pytest.approx([0, 0, r2, r2])
    assert sorted(v.loc[v["strategy"] == "b", "z"]) == pytest.approx([-r2, -r2, 0, 0])
    test = pooled.tests.iloc[0]
    ref = mannwhitneyu([0, r2, 0, r2], [-r2, 0, -r2, 0], alternative="two-sided")
    assert test["p"] == pytest.approx(ref.pvalue)
    assert test["mean_z"] == pytest.approx(r2 / 2)
    # The shared starting set can be left out of the pooling.
    assert S.pooled_comparison(t, baseline="b", exclude_sizes=[10]).sizes == (20,)
    assert len(S.pooled_comparison(t, baseline="b", exclude_sizes={10}).values) == 4


def test_pooling_removes_the_size_effect() -> None:
    # Strategy a is slightly better at every size, but sizes differ hugely in level. Pooling
    # raw values would find nothing; the standardized comparison finds a clear difference.
    rng = np.random.default_rng(0)
    rows = []
    for k, size in enumerate((100, 200, 400, 800)):
        level = 0.6 + 0.1 * k
        rows += _rows("a", size, level + 0.01 + rng.normal(0, 0.005, 10))
        rows += _rows("b", size, level + rng.normal(0, 0.005, 10))
    t = S.check_results(pd.DataFrame(rows))
    pooled = S.pooled_comparison(t, baseline="b")
    raw = mannwhitneyu(t.loc[t["strategy"] == "a", "value"], t.loc[t["strategy"] == "b", "value"])
    assert pooled.tests.iloc[0]["p"] < 1e-6 < raw.pvalue
    # Every size is standardized: mean 0 and SD 1 (ddof 0).
    for _, g in pooled.values.groupby("size"):
        assert g["z"].mean() == pytest.approx(0, abs=1e-12)
        assert g["z"].std(ddof=0) == pytest.approx(1)


def test_pooled_constant_size_and_single_strategy_sizes() -> None:
    rows = _rows("a", 10, np.array([0.5, 0.5])) + _rows("b", 10, np.array([0.5, 0.5]))
    rows += _rows("a", 20, np.array([0.7, 0.8]))  # only one strategy: not pooled
    pooled = S.pooled_comparison(S.check_results(pd.DataFrame(rows)), baseline="b")
    assert pooled.sizes == (10,)
    assert (pooled.values["z"] == 0).all()
    assert pooled.tests.iloc[0]["p"] == 1.0
    # 2 models vs 2 cannot give p <= 0.05: the test is flagged; 4 vs 4 (two sizes) can.
    assert bool(pooled.tests.iloc[0]["underpowered"])
    rows += _rows("b", 20, np.array([0.7, 0.8]))
    pooled = S.pooled_comparison(S.check_results(pd.DataFrame(rows)), baseline="b")
    assert not bool(pooled.tests.iloc[0]["underpowered"])


# --------------------------------------------------------------------------- Table 2, Fig. 4


def _manifest() -> pd.DataFrame:
    # 8 images: patients p1..p4, clips c1..c5, classes 0/1.
    return pd.DataFrame(
        {
            "id": [f"i{k}" for k in range(8)],
            "patient_id": ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"],
            "clip_id": ["c1", "c1", "c2", "c3", "c4", "c4", "c5", "c5"],
            "label": [0, 1, 0, 1, 0, 1, 0, 1],
        }
    )


def test_shared_sizes() -> None:
    rows = []
    for init in (0, 1):
        for name in ("enrich", "random"):
            rows += [(name, init, 2, i) for i in ("a", "b")]  # the shared seed, both inits
            rows += [(name, init, 3, i) for i in ("a", "b", name if init else "c")]
    sub = pd.DataFrame(rows, columns=["strategy", "init", "size", "id"])
    # Size 3 is identical in init 0 only: not shared.
    assert S.shared_sizes(sub) == {2}
    assert S.shared_sizes(sub.loc[sub["strategy"] == "enrich"]) == set()


def test_coverage_hand_counted() -> None:
    subsets = pd.DataFrame(
        {
            "strategy": ["enrich"] * 7 + ["random"] * 3,
            "init": [0, 0, 0, 1, 1, 1, 1, 0, 0, 0],
            "size": [3, 3, 3, 4, 4, 4, 4, 3, 3, 3],
            "id": ["i0", "i2", "i4", "i0", "i3", "i5", "i7", "i0", "i1", "i2"],
        }
    )
    cov = S.coverage(subsets, _manifest(), average_inits=False)
    got = cov.set_index(["strategy", "init", "size", "class"])
    # enrich init 0: i0 i2 i4 -> 3 images, patients p1 p2 p3, clips c1 c2 c4; all class 0.
    assert got.loc[("enrich", 0, 3, "all"), ["images", "patients", "clips"]].tolist() == [3, 3, 3]
    assert got.loc[("enrich", 0, 3, "0"), "images"] == 3
    assert ("enrich", 0, 3, "1") not in got.index
    # random init 0: i0 i1 i2 -> patients p1 p2, clips c1 c2.
    assert got.loc[("random", 0, 3, "all"), ["images", "patients", "clips"]].tolist() == [3, 2, 2]
    assert got.loc[("random", 0, 3, "1"), ["images", "patients"]].tolist() == [1, 1]
    # Averaged over initializations per (strategy, size): sizes differ per init here, so
    # check the averaging on a shared size.
    sub2 = subsets.assign(size=3)
    avg = S.coverage(sub2, _manifest()).set_index(["strategy", "size", "class"])
    # enrich: init 0 has 3 patients, init 1 has i0 i3 i5 i7 -> p1 p2 p3 p4 = 4: mean 3.5.
    assert avg.loc[("enrich", 3, "all"), "patients"] == 3.5
    assert avg.loc[("enrich", 3, "all"), "images"] == 3.5
    assert avg.loc[("enrich", 3, "all"), "n_inits"] == 2
    # A mean count comes with its range over the initializations.
    assert avg.loc[("enrich", 3, "all"), ["patients_min", "patients_max"]].tolist() == [3, 4]
    assert avg.loc[("random", 3, "all"), ["images_min", "images_max"]].tolist() == [3, 3]


def test_coverage_full_row_missing_ids_and_errors() -> None:
    man = _manifest().drop(columns=["clip_id"])
    subsets = pd.DataFrame({"strategy": ["enrich"], "init": [0], "size": [1], "id": ["i0"]})
    cov = S.coverage(subsets, man, train_ids=man["id"], by_class=False)
    full = cov.loc[cov["strategy"] == S.FULL].iloc[0]
    assert full["images"] == 8 and full["patients"] == 4 and math.isnan(full["clips"])
    assert full["fraction"] == 1.0
    assert set(cov["class"]) == {"all"}
    with pytest.raises(EnrichError, match="not in the manifest"):
        S.coverage(subsets.assign(id="nope"), man)
    with pytest.raises(EnrichError, match="lacks column"):
        S.coverage(subsets.drop(columns="id"), man)


def test_labeling_time_paper_numbers() -> None:
    # ECHO-F: 45,460 training images, ENRICH needs 25,000, 3 s per image:
    # (45,460 - 25,000) × 3 s = 61,380 s = 17.05 h saved.
    full = _rows(S.FULL, 45460, FULL_VALUES, inits=1)
    rows = full + _rows("enrich", 20000, FULL_VALUES - 0.1) + _rows("enrich", 25000, FULL_VALUES)
    t = S.check_results(pd.DataFrame(rows))
    r = S.labeling_time(t, seconds_per_image=3.0).iloc[0]
    assert r["size"] == 25000 and r["reached"]
    assert r["hours_saved"] == pytest.approx(17.05)
    assert r["hours_full"] == pytest.approx(45460 * 3 / 3600)
    assert r["fraction_saved"] == pytest.approx(20460 / 45460)
    # ECHO-F-SEG: 1,248 images, 1,000 needed, 5 min each: 248 × 300 s = 20.67 h.
    seg = _rows(S.FULL, 1248, FULL_VALUES, inits=1) + _rows("enrich", 1000, FULL_VALUES)
    r = S.labeling_time(S.check_results(pd.DataFrame(seg)), seconds_per_image=300).iloc[0]
    assert r["hours_saved"] == pytest.approx(248 * 300 / 3600)
    with pytest.raises(EnrichError, match="seconds_per_image"):
        S.labeling_time(t, seconds_per_image=0)
