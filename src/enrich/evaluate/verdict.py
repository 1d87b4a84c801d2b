"""Which strategy to label with on this data: pure functions over a benchmark's results table.

A benchmark run with several strategies (``strategies: [enrich, typiclust, probcover,
facility, random]``) trains models on every strategy's subsets from the same seed sets,
splits and model seeds. This module turns its ``results.csv`` into the answer a user wants:

- :func:`compare_strategies`: at each size, each strategy vs random and vs the best *other*
  strategy at that size (two-sided Mann-Whitney U), with Holm's step-down correction across
  all strategies and sizes of each family (:func:`holm`): with five strategies and ten sizes,
  an uncorrected p < 0.05 somewhere is expected by chance alone;
- :func:`label_efficiency`: at each measured size *n*, the fewest labels with which a
  strategy's learning curve (mean metric vs size, linearly interpolated) reaches random's mean
  metric at *n*, with a bootstrap confidence interval over models;
- :func:`recommend`: the headline. A strategy is recommended only if its pooled z-scores
  (Fig. 5, :func:`enrich.evaluate.stats.pooled_comparison`) sit above random's with a
  Holm-corrected p < alpha across the strategies tried, and it is never significantly worse
  than random at any size; among those, the highest pooled mean z. Otherwise the headline
  says plainly that none beat random here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from enrich.evaluate.stats import (
    FULL,
    choose_metric,
    min_attainable_p,
    models_needed,
    mwu,
    ok_results,
    pooled_comparison,
    records,
    stars,
    strategies,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Verdict",
    "compare_strategies",
    "holm",
    "label_efficiency",
    "plot_label_efficiency",
    "recommend",
    "write_verdict",
]


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (NaN stays NaN and is not counted).

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _cells(ok: pd.DataFrame, exclude_sizes: Iterable[int]) -> dict[tuple[str, int], np.ndarray]:
    ok = ok.loc[(ok["strategy"] != FULL) & ~ok["size"].isin([int(x) for x in exclude_sizes])]
    out: dict[tuple[str, int], np.ndarray] = {}
    for key, g in ok.groupby(["strategy", "size"]):
        s, n = cast(tuple[Any, Any], key)
        out[(str(s), int(n))] = g["value"].to_numpy(dtype=float)
    return out


def compare_strategies(
    table: pd.DataFrame,
    *,
    baseline: str = "random",
    metric: str | None = None,
    exclude_sizes: Iterable[int] = (),
) -> pd.DataFrame:
    """Each strategy at each size vs `baseline` and vs the best other strategy there.

    Returns
    -------
    DataFrame
        ``comparison`` (``baseline`` or ``best other``), ``strategy, size, n, mean, vs, n_vs,
        mean_vs, U, p, p_holm, stars`` (stars of ``p_holm``). Holm's correction runs over all
        rows of each comparison family.
    """
    import pandas as pd

    ok = ok_results(table, metric=metric)
    cells = _cells(ok, exclude_sizes)
    names = [s for s in strategies(ok, baseline=baseline) if s != FULL]
    sizes = sorted({n for _, n in cells})
    rows: list[dict[str, Any]] = []
    for n in sizes:
        here = [s for s in names if (s, n) in cells]
        means = {s: float(np.mean(cells[(s, n)])) for s in here}
        for s in here:
            if s == baseline:
                continue
            x = cells[(s, n)]
            targets = []
            if baseline in here:
                targets.append(("baseline", baseline))
            others = [o for o in here if o not in (s, baseline)]
            if others:
                best = max(others, key=lambda o: (means[o], o))
                targets.append(("best other", best))
            for family, vs in targets:
                y = cells[(vs, n)]
                t = mwu(x, y)
                rows.append(
                    {
                        "comparison": family,
                        "strategy": s,
                        "size": n,
                        "n": len(x),
                        "mean": means[s],
                        "vs": vs,
                        "n_vs": len(y),
                        "mean_vs": means[vs],
                        "U": t.statistic,
                        "p": t.pvalue,
                    }
                )
    columns = ["comparison", "strategy", "size", "n", "mean", "vs", "n_vs", "mean_vs", "U", "p"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = np.nan
    for family in out["comparison"].unique():
        mask = out["comparison"] == family
        out.loc[mask, "p_holm"] = holm(out.loc[mask, "p"].to_numpy())
    out["stars"] = [stars(p) for p in out["p_holm"]]
    return out


def _labels_needed(sizes: np.ndarray, means: np.ndarray, target: float) -> tuple[float, str]:
    """The first size where the linearly interpolated curve reaches `target`."""
    if means[0] >= target:
        return float(sizes[0]), "at or below the smallest size"
    for i in range(1, len(sizes)):
        if means[i] >= target:
            lo, hi = means[i - 1], means[i]
            frac = (target - lo) / (hi - lo) if hi > lo else 1.0
            return float(sizes[i - 1] + frac * (sizes[i] - sizes[i - 1])), "reached"
    return math.inf, "not reached"


def label_efficiency(
    table: pd.DataFrame,
    *,
    baseline: str = "random",
    metric: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    exclude_sizes: Iterable[int] = (),
) -> pd.DataFrame:
    """The fewest labels with which each strategy matches the baseline at each size.

    For each strategy ≠ `baseline` and each size *n* where the baseline was measured, the
    strategy's learning curve (its mean metric at each of its sizes, linearly interpolated in
    the number of labels) is followed from the smallest size until it reaches the baseline's
    mean at *n*. ``labels`` is that (interpolated) count; ``ratio = labels / n`` (< 1: the
    strategy saves labels). The confidence interval resamples the models of every cell with
    replacement (`n_boot` times, percentile 2.5–97.5). A curve that never reaches the target
    within the measured sizes gives ``inf`` (more labels than measured); one that already
    reaches it at its smallest size gives that size (an upper bound, ``status`` says so).

    Returns
    -------
    DataFrame
        ``strategy, size, baseline_mean, labels, ratio, ci_low, ci_high, status``.
    """
    import pandas as pd

    ok = ok_results(table, metric=metric)
    cells = _cells(ok, exclude_sizes)
    rng = np.random.default_rng(seed)
    base_sizes = sorted(n for s, n in cells if s == baseline)
    rows = []
    for s in strategies(ok, baseline=baseline):
        if s in (baseline, FULL):
            continue
        sizes = np.array(sorted(n for t, n in cells if t == s), dtype=float)
        if not len(sizes):
            continue
        vals = [cells[(s, int(n))] for n in sizes]
        means = np.array([v.mean() for v in vals])
        # (n_boot, n_sizes) bootstrap means of the strategy's curve, drawn once per strategy
        boot_curve = np.stack(
            [v[rng.integers(len(v), size=(n_boot, len(v)))].mean(axis=1) for v in vals], axis=1
        )
        for n in base_sizes:
            b = cells[(baseline, n)]
            labels, status = _labels_needed(sizes, means, float(b.mean()))
            boot_b = b[rng.integers(len(b), size=(n_boot, len(b)))].mean(axis=1)
            boots = np.array(
                [_labels_needed(sizes, boot_curve[r], float(boot_b[r]))[0] for r in range(n_boot)]
            )
            if n_boot:  # no interpolation between draws: inf ("not reached") stays inf
                lo = np.quantile(boots, 0.025, method="lower")
                hi = np.quantile(boots, 0.975, method="higher")
            else:
                lo = hi = np.nan
            rows.append(
                {
                    "strategy": s,
                    "size": n,
                    "baseline_mean": float(b.mean()),
                    "labels": labels,
                    "ratio": labels / n,
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                    "status": status,
                }
            )
    columns = ["strategy", "size", "baseline_mean", "labels", "ratio", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=[*columns, "status"])


def plot_label_efficiency(eff: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Labels each strategy needs to match the baseline, against the baseline's labels.

    Parameters
    ----------
    eff : DataFrame
        :func:`label_efficiency`'s table.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        One line per strategy with its bootstrap band; the diagonal is "as many labels as
        random" (below it: the strategy saves labels). Points whose curve never reached the
        target within the measured sizes are drawn as open markers on the top edge.
    """
    from matplotlib.figure import Figure

    from enrich.report.plots import PHONE_WIDTH_IN, readable, strategy_colors

    own = ax is None
    if ax is None:
        fig = Figure(figsize=(PHONE_WIDTH_IN, 4.4), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure  # type: ignore[assignment]
    sizes = np.sort(eff["size"].unique()) if len(eff) else np.array([1.0])
    top = float(sizes.max()) * 1.15
    ax.plot([0, top], [0, top], color="0.6", lw=1, ls="--", label="as many labels as random")
    colors = strategy_colors(eff["strategy"].unique())
    for name, g in eff.groupby("strategy", sort=False):
        g = g.sort_values("size")
        c = colors[str(name)]
        finite = np.isfinite(g["labels"].to_numpy(dtype=float))
        x = g["size"].to_numpy(dtype=float)
        label = {"enrich": "ENRICH"}.get(str(name), str(name))
        ax.plot(x[finite], g["labels"].to_numpy(dtype=float)[finite], "o-", color=c, label=label)
        lo = np.minimum(g["ci_low"].to_numpy(dtype=float), top)
        hi = np.minimum(g["ci_high"].to_numpy(dtype=float), top)
        ax.fill_between(x, lo, hi, color=c, alpha=0.15, lw=0)
        if (~finite).any():
            ax.plot(x[~finite], np.full((~finite).sum(), top), "o", mfc="none", color=c)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top * 1.02)
    ax.set_xlabel("labels random needed")
    ax.set_ylabel("labels the strategy needed")
    ax.set_title("Labels to match random (band: 95% CI)")
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    return readable(fig) if own else fig  # a caller's own figure keeps its fonts


@dataclass(frozen=True)
class Verdict:
    """The headline of a multi-strategy benchmark.

    Attributes
    ----------
    strategy : str or None
        The strategy to label with, or None when none beat the baseline.
    headline : str
        One or two sentences for the report and the terminal.
    pooled : list of dict
        Per strategy: pooled mean z, the baseline's, p and Holm-corrected p.
    status : {"recommend", "none", "cannot_tell", "nothing"}
        ``recommend``: `strategy` beat the baseline; ``none``: the tests could have shown a
        difference and none did; ``cannot_tell``: too few models for any Holm-corrected
        p-value to reach alpha (nothing is claimed); ``nothing``: no baseline to compare with.
    models_needed : int or None
        With ``cannot_tell``: the fewest models per point (initializations × models) with
        which the pooled test, after Holm's correction, could reach alpha.
    """

    strategy: str | None
    headline: str
    pooled: list[dict[str, Any]] = field(default_factory=list)
    status: str = "none"
    models_needed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "headline": self.headline,
            "status": self.status,
            "models_needed": self.models_needed,
            "pooled": self.pooled,
        }


def recommend(
    table: pd.DataFrame,
    *,
    baseline: str = "random",
    metric: str | None = None,
    alpha: float = 0.05,
    exclude_sizes: Iterable[int] = (),
) -> Verdict:
    """Name the strategy to label with, or say that none beat `baseline`.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = [("a", 10, 0.8 + 0.01 * i) for i in range(6)] + [
    ...     ("random", 10, 0.6 + 0.01 * i) for i in range(6)]
    >>> t = pd.DataFrame(rows, columns=["strategy", "size", "value"]).assign(
    ...     status="ok", metric="auc", init=0, model=range(12))
    >>> recommend(t).strategy
    'a'
    """
    exclude = [int(x) for x in exclude_sizes]
    metric = choose_metric(table, metric)
    pooled = pooled_comparison(table, baseline=baseline, metric=metric, exclude_sizes=exclude)
    tests = pooled.tests.copy()
    if tests.empty or baseline not in set(ok_results(table, metric=metric)["strategy"]):
        return Verdict(
            None, f"Nothing to compare: the run has no {baseline!r} models.", status="nothing"
        )
    tests["p_holm"] = holm(tests["p"].to_numpy())
    per_size = compare_strategies(table, baseline=baseline, metric=metric, exclude_sizes=exclude)
    vs_base = per_size.loc[per_size["comparison"] == "baseline"]
    worse = set(
        vs_base.loc[
            (vs_base["p_holm"] < alpha) & (vs_base["mean"] < vs_base["mean_vs"]), "strategy"
        ]
    )
    good = tests.loc[
        (tests["p_holm"] < alpha)
        & (tests["mean_z"] > tests["mean_z_baseline"])
        & ~tests["strategy"].isin(worse)
    ]
    summary = [
        {
            "strategy": str(r["strategy"]),
            "mean_z": float(r["mean_z"]),
            "mean_z_baseline": float(r["mean_z_baseline"]),
            "p": float(r["p"]),
            "p_holm": float(r["p_holm"]),
        }
        for r in records(tests)
    ]
    n_sizes = len(pooled.sizes)
    m = len(tests)
    # Holm multiplies the smallest p by m: a test whose smallest attainable p is above
    # alpha / m can never give a corrected p < alpha, whatever the models score.
    reachable = [
        min_attainable_p(int(r["n"]), int(r["n_baseline"])) * m < alpha for r in records(tests)
    ]
    if not any(reachable):
        per_point = max(1, round(float(tests["n"].max()) / max(n_sizes, 1)))
        pooled_need = models_needed(alpha / m)
        need = max(per_point + 1, math.ceil(pooled_need / max(n_sizes, 1)))
        return Verdict(
            None,
            f"Cannot tell yet which strategy to label with: with {per_point} model"
            f"{'s' if per_point != 1 else ''} per point over {n_sizes} subset size"
            f"{'s' if n_sizes != 1 else ''}, no test of {m} strateg"
            f"{'ies' if m != 1 else 'y'} against {baseline} can reach p < {alpha:g} after "
            f"Holm's correction. Need ≥ {need} models per point.",
            summary,
            status="cannot_tell",
            models_needed=need,
        )
    if good.empty:
        best = tests.sort_values(["mean_z", "strategy"], ascending=[False, True]).iloc[0]
        return Verdict(
            None,
            f"No strategy beat {baseline} on this data: across {n_sizes} subset sizes the best, "
            f"{best['strategy']}, has pooled z {best['mean_z']:+.2f} vs {baseline}'s "
            f"{best['mean_z_baseline']:+.2f} (Mann-Whitney p = {best['p']:.2g}, "
            f"{best['p_holm']:.2g} after Holm's correction over {len(tests)} strategies). "
            f"Label in {baseline} order, or measure with more models per point.",
            summary,
            status="none",
        )
    pick = good.sort_values(["mean_z", "strategy"], ascending=[False, True]).iloc[0]
    name = str(pick["strategy"])
    eff = label_efficiency(table, baseline=baseline, metric=metric, exclude_sizes=exclude, n_boot=0)
    ratios = eff.loc[(eff["strategy"] == name) & np.isfinite(eff["ratio"]), "ratio"]
    saving = (
        f"; it matched {baseline}'s {metric} with a median {100 * float(ratios.median()):.0f}% "
        f"of the labels across the measured sizes"
        if len(ratios)
        else ""
    )
    return Verdict(
        name,
        f"Label with {name}: across {n_sizes} subset sizes its models score above {baseline}'s "
        f"(pooled z {pick['mean_z']:+.2f} vs {pick['mean_z_baseline']:+.2f}, Mann-Whitney "
        f"p = {pick['p']:.2g}, {pick['p_holm']:.2g} after Holm's correction over "
        f"{len(tests)} strategies){saving}.",
        summary,
        status="recommend",
    )


def write_verdict(run_dir: str | os.PathLike[str], *, n_boot: int = 1000) -> Verdict | None:
    """Write ``verdict.json`` (the headline, pooled tests, per-size comparisons with Holm's
    correction, label efficiency with bootstrap intervals) and ``label_efficiency.png`` into
    a benchmark run folder.

    Returns None (and writes nothing) when the run has fewer than two subset strategies with
    results yet.
    """
    import json

    from enrich._atomic import write_json
    from enrich.evaluate.stats import check_results, read_results, shared_sizes

    run = Path(run_dir)
    if not (run / "results.csv").exists():
        return None
    table = check_results(read_results(run / "results.csv"))
    ok = ok_results(table)
    if len(set(ok["strategy"]) - {FULL}) < 2:
        return None
    exclude: set[int] = set()
    subsets_path = run / "subsets.parquet"
    if subsets_path.exists():
        import pandas as pd

        exclude = shared_sizes(pd.read_parquet(subsets_path))
    verdict = recommend(table, exclude_sizes=exclude)
    per_size = compare_strategies(table, exclude_sizes=exclude)
    eff = label_efficiency(table, exclude_sizes=exclude, n_boot=n_boot)

    def plain(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return json.loads(frame.to_json(orient="records"))  # inf -> null

    write_json(
        run / "verdict.json",
        {
            **verdict.to_dict(),
            "baseline": "random",
            "excluded_sizes": sorted(exclude),
            "correction": "Holm step-down, over all strategies and sizes of each comparison",
            "comparisons": plain(per_size),
            "label_efficiency": plain(eff),
        },
    )
    if len(eff):
        from enrich._atomic import atomic_path
        from enrich.report.plots import figure_png

        with atomic_path(run / "label_efficiency.png") as tmp:
            tmp.write_bytes(figure_png(plot_label_efficiency(eff)))
    return verdict
