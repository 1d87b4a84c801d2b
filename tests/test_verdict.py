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


# --------------------------------------------------------------------------- in the report


def _report_rows(means: dict[str, float], *, per_point: int, seed: int = 0) -> pd.DataFrame:
    """A benchmark results table (sizes 12/24/36 of 48, full-set models included) where each
    strategy's metric is `random`'s plus ``means[strategy]``, with small noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, shift in means.items():
        for j, n in enumerate((12, 24, 36)):
            for m in range(per_point):
                value = 0.7 + 0.05 * j + shift + 0.01 * rng.normal()
                rows.append((s, m % 2, n, n / 48, m // 2, value))
    for m in range(max(per_point, 4)):
        rows.append(("full", 0, 48, 1.0, m, 0.9 + 0.01 * rng.normal()))
    t = pd.DataFrame(rows, columns=["strategy", "init", "size", "fraction", "model", "value"])
    return t.assign(seed=range(len(t)), metric="auc", status="ok", error="", wall_s=0.1)


def _verdict_html(tmp_path, results: pd.DataFrame) -> str:
    import re

    from enrich.report.html import write_report
    from test_report import make_run

    run = make_run(tmp_path, results)
    html = write_report(run).read_text()
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "IMG", html)


def _card_text(html: str) -> tuple[str, str]:
    import re

    m = re.search(r'id="verdict-card" data-status="([a-z_]+)">(.*?)\n</div>', html, re.S)
    assert m, "no verdict card"
    return m.group(1), re.sub(r"<[^>]+>", " ", m.group(2))


def test_report_headline_names_the_strategy_that_beats_random(tmp_path) -> None:
    html = _verdict_html(
        tmp_path,
        _report_rows({"random": 0, "enrich": -0.01, "typiclust": 0.05, "facility": 0}, per_point=8),
    )
    status, card = _card_text(html)
    assert status == "recommend"
    assert "Label with" in card and "typiclust" in card and "facility" not in card
    assert "after Holm's correction" in card and "3 strategies" in card
    assert "95% CI" in card  # label efficiency with its interval
    assert "--strategy typiclust" in card
    # the per-strategy tables say the correction was applied; the figure is there
    for table_id in ("verdict-pooled", "verdict-sizes", "verdict-efficiency"):
        assert f'id="{table_id}"' in html
    assert "Holm's correction was applied over all 9 strategy × size comparisons" in html
    assert 'alt="Labels each strategy needed' in html
    intro = html[html.index("We trained models") :][:300]
    assert "by each of" in intro and all(n in intro for n in ("ENRICH", "typiclust", "facility"))


def test_report_says_plainly_when_no_strategy_beats_random(tmp_path) -> None:
    html = _verdict_html(
        tmp_path, _report_rows({"random": 0, "enrich": 0, "probcover": 0}, per_point=8, seed=4)
    )
    status, card = _card_text(html)
    assert status == "none"
    assert "None beat random here" in card and "No strategy beat random on this data" in card
    assert "Label with" not in card


def test_report_verdict_from_too_few_models_claims_nothing(tmp_path) -> None:
    # one model per point: 3 vs 3 pooled z-scores can never reach p < 0.05 / 3 after Holm,
    # however far ahead typiclust is
    html = _verdict_html(
        tmp_path,
        _report_rows({"random": 0, "enrich": 0, "typiclust": 0.2, "facility": 0}, per_point=1),
    )
    status, card = _card_text(html)
    assert status == "cannot_tell"
    assert "Cannot tell yet" in card and "Need ≥ 2 models per point" in card
    assert "Label with" not in card and "typiclust" not in card


def test_recommend_cannot_tell_counts_the_strategies_tried() -> None:
    # 1 model per point at 4 sizes: pooled 4 vs 4 can reach p = 2 / C(8, 4) = 0.029 < 0.05
    # for one strategy, but not below 0.05 / 2 once Holm corrects for two
    ahead = {n: v + 0.1 for n, v in RANDOM.items()}
    assert recommend(table({"random": RANDOM, "a": ahead}, n=1)).status == "recommend"
    v = recommend(table({"random": RANDOM, "a": ahead, "b": ahead}, n=1))
    assert v.status == "cannot_tell" and v.strategy is None
    assert v.models_needed == 2  # 8 vs 8: 2 / C(16, 8) = 1.6e-4 < 0.025
    assert "Need ≥ 2 models per point" in v.headline


def test_verdict_figures_are_readable_at_phone_width() -> None:
    from enrich.evaluate import stats as S
    from enrich.evaluate.verdict import plot_label_efficiency
    from enrich.report import plots
    from test_report import _smallest_text_px

    names = ["enrich", "typiclust", "probcover", "facility", "repdiv", "enrich_dense"]
    t = table({"random": RANDOM, **{s: RANDOM for s in names}}, n=4)
    for fig in (
        plot_label_efficiency(label_efficiency(t, n_boot=20)),
        plots.plot_pooled(S.check_results(t)),
    ):
        assert fig.get_figwidth() <= plots.PHONE_WIDTH_IN
        assert _smallest_text_px(fig) >= 9.0
