"""Which strategy to trust (issue 10, section 2): Holm, label efficiency, the headline."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from enrich.evaluate.verdict import compare_strategies, holm, label_efficiency, recommend


def holm_reference(p: np.ndarray) -> np.ndarray:
    """The definition: adjusted p_i = max over p_j <= p_i (in sorted order) of (m - rank_j) p_j,
    capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    out = np.empty(m)
    for r, i in enumerate(order):
        out[i] = min(1.0, max((m - q) * p[order[q]] for q in range(r + 1)))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_its_definition(seed: int) -> None:
    p = np.random.default_rng(seed).uniform(0, 0.2, size=12)
    np.testing.assert_allclose(holm(p), holm_reference(p))
    assert (holm(p) >= p).all()


def test_holm_keeps_nan_out_of_the_count() -> None:
    out = holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def table(means: dict[str, dict[int, float]], *, n: int = 8, sd: float = 0.01, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for s, by_size in means.items():
        for size, mu in by_size.items():
            for m in range(n):
                rows.append((s, size, mu + sd * rng.normal(), m % 2, m // 2))
    t = pd.DataFrame(rows, columns=["strategy", "size", "value", "init", "model"])
    return t.assign(status="ok", metric="auc", fraction=t["size"] / 100)


SIZES = [10, 20, 40, 80]
RANDOM = {10: 0.60, 20: 0.70, 40: 0.80, 80: 0.85}


def test_compare_strategies_families_and_correction() -> None:
    t = table(
        {
            "random": RANDOM,
            "good": {n: v + 0.05 for n, v in RANDOM.items()},
            "same": dict(RANDOM),
        }
    )
    out = compare_strategies(t)
    base = out[out["comparison"] == "baseline"]
    assert len(base) == 2 * 4 and set(base["vs"]) == {"random"}
    other = out[out["comparison"] == "best other"]
    # the best other strategy of "same" is "good" at every size, and of "good" is "same"
    assert set(other.loc[other["strategy"] == "same", "vs"]) == {"good"}
    assert set(other.loc[other["strategy"] == "good", "vs"]) == {"same"}
    assert (out["p_holm"] >= out["p"] - 1e-12).all()
    good = base[base["strategy"] == "good"]
    assert (good["p_holm"] < 0.05).all() and (good["mean"] > good["mean_vs"]).all()
    np.testing.assert_allclose(base["p_holm"], holm(base["p"].to_numpy()))


def test_label_efficiency_interpolates_the_learning_curve() -> None:
    # "fast" reaches random's 0.70 (size 20) at 15 labels and random's 0.80 (size 40) at 20
    fast = {10: 0.65, 20: 0.80, 40: 0.86, 80: 0.88}
    t = table({"random": RANDOM, "fast": fast}, sd=0.0)
    eff = label_efficiency(t, n_boot=20).set_index("size")
    assert eff.loc[10, "status"] == "at or below the smallest size"
    assert eff.loc[10, "labels"] == pytest.approx(10.0)
    assert (eff.loc[[20, 40, 80], "status"] == "reached").all()
    assert eff.loc[20, "labels"] == pytest.approx(10 + (0.70 - 0.65) / 0.15 * 10)
    assert eff.loc[40, "labels"] == pytest.approx(20.0)
    assert eff.loc[80, "labels"] == pytest.approx(20 + (0.85 - 0.80) / 0.06 * 20)
    assert eff.loc[40, "ratio"] == pytest.approx(0.5)
    # no noise: every bootstrap draw gives the same curve
    np.testing.assert_allclose(eff["ci_low"], eff["labels"])
    np.testing.assert_allclose(eff["ci_high"], eff["labels"])


def test_label_efficiency_bounds_and_ci() -> None:
    slow = {n: v - 0.3 for n, v in RANDOM.items()}
    t = table({"random": RANDOM, "slow": slow, "ahead": {n: 0.95 for n in SIZES}}, sd=0.02)
    eff = label_efficiency(t, n_boot=200, seed=1)
    s = eff[eff["strategy"] == "slow"]
    assert (s["status"] == "not reached").all() and np.isinf(s["labels"]).all()
    a = eff[eff["strategy"] == "ahead"]
    assert (a["status"] == "at or below the smallest size").all() and (a["labels"] == 10).all()
    noisy = label_efficiency(
        table({"random": RANDOM, "fast": {10: 0.65, 20: 0.8, 40: 0.86, 80: 0.9}}, sd=0.03),
        n_boot=300,
    )
    finite = noisy[np.isfinite(noisy["ci_high"])]
    assert (finite["ci_low"] <= finite["labels"] + 1e-9).all()
    assert (finite["labels"] <= finite["ci_high"] + 1e-9).all()
    assert (finite["ci_high"] > finite["ci_low"]).any()


def test_recommend_names_the_winner_with_its_evidence() -> None:
    t = table(
        {
            "random": RANDOM,
            "enrich": {n: v - 0.01 for n, v in RANDOM.items()},
            "typiclust": {n: v + 0.04 for n, v in RANDOM.items()},
            "facility": {n: v + 0.02 for n, v in RANDOM.items()},
        }
    )
    v = recommend(t)
    assert v.strategy == "typiclust"
    assert v.headline.startswith("Label with typiclust")
    assert "Holm" in v.headline and "% of the labels" in v.headline
    assert {p["strategy"] for p in v.pooled} == {"enrich", "typiclust", "facility"}


def test_recommend_says_plainly_when_none_beat_random() -> None:
    rng = np.random.default_rng(3)
    rows = [
        (s, n, 0.7 + 0.05 * rng.normal(), i % 2, i // 2)
        for s, n, i in itertools.product(["random", "enrich", "probcover"], SIZES, range(6))
    ]
    t = pd.DataFrame(rows, columns=["strategy", "size", "value", "init", "model"]).assign(
        status="ok", metric="auc"
    )
    v = recommend(t)
    assert v.strategy is None
    assert v.headline.startswith("No strategy beat random on this data")


def test_recommend_refuses_a_strategy_worse_than_random_somewhere() -> None:
    # ahead at three sizes by a lot, clearly behind at the largest
    t = table(
        {
            "random": RANDOM,
            "mixed": {10: 0.75, 20: 0.85, 40: 0.9, 80: 0.7},
        },
        n=10,
    )
    assert recommend(t).strategy is None


def test_label_efficiency_figure_draws_each_strategy() -> None:
    from enrich.evaluate.verdict import plot_label_efficiency

    t = table(
        {
            "random": RANDOM,
            "fast": {10: 0.65, 20: 0.8, 40: 0.86, 80: 0.88},
            "slow": {n: v - 0.3 for n, v in RANDOM.items()},
        },
        sd=0.01,
    )
    fig = plot_label_efficiency(label_efficiency(t, n_boot=20))
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "fast" in labels and "as many labels as random" in labels
    # "slow" never reaches random: open markers on the top edge only
    top = ax.get_xlim()[1]
    slow = next(ln for ln in ax.get_lines() if ln.get_label() == "slow")
    assert len(slow.get_xdata()) == 0
    assert any(np.allclose(ln.get_ydata(), top) for ln in ax.get_lines() if len(ln.get_ydata()))
