"""The paper's figures from a results table (matplotlib, no pyplot, no display needed).

Each function takes the results table (``results.csv`` checked by
:func:`enrich.evaluate.stats.check_results`) and an optional ``ax``, draws on it (or on a
new figure) and returns the :class:`~matplotlib.figure.Figure`:

- :func:`plot_performance`: Fig. 3, metric vs subset size, mean ± SD per strategy, stars per
  size, red circles on points indistinguishable from the full set, the full set in black;
- :func:`plot_labeling_time`: Fig. 4, labeling hours for the full set vs the subsets;
- :func:`plot_pooled`: Fig. 5, standardized pooled distributions per strategy with the p-value;
- :func:`plot_redundancy_cdf`: Fig. 1, delegated to :func:`enrich.redundancy.plot_cdf`.

Figures are built with :class:`matplotlib.figure.Figure` directly, never ``pyplot``, so
they need no GUI backend, are not kept alive by a global registry and are safe in threads.

They are sized to be read on a phone: at most :data:`PHONE_WIDTH_IN` inches wide with no
text under :data:`MIN_FONT_PT` points (:func:`readable`), so that when a 360-px-wide screen
shrinks a figure to its width, the smallest text is still about 9 px tall.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from enrich.errors import EnrichError
from enrich.evaluate import stats as S

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DPI",
    "FULL_COLOR",
    "METRIC_LABELS",
    "MIN_FONT_PT",
    "PHONE_WIDTH_IN",
    "figure_png",
    "plot_labeling_time",
    "plot_performance",
    "plot_pooled",
    "plot_redundancy_cdf",
    "readable",
    "strategy_colors",
]

#: Colours as in the paper: ENRICH blue, random yellow, the full set black.
_FIXED_COLORS = {"enrich": "#1f5fbf", "random": "#e0a800", "initial": "#8c8c8c"}
FULL_COLOR = "#000000"
_OTHER_COLORS = ("#2ca02c", "#9467bd", "#d62728", "#17becf", "#8c564b", "#e377c2")
#: Axis labels for known metrics.
METRIC_LABELS = {"auc": "AUC (test set)", "jaccard": "Mean Jaccard (test set)"}
#: Widest figure, in inches, and smallest text, in points: 9.5 pt on 4.8 in shrunk to the
#: 336 px a 360-px phone leaves for it is 9.2 px.
PHONE_WIDTH_IN = 4.8
MIN_FONT_PT = 9.5
#: Resolution of the PNGs in the report (sharp on high-density phone screens).
DPI = 160


def strategy_colors(names: Iterable[str]) -> dict[str, str]:
    """A stable colour per strategy: ENRICH blue, random yellow, others from a palette.

    >>> strategy_colors(["random", "enrich", "kcenter"])["kcenter"]
    '#2ca02c'
    """
    out: dict[str, str] = {}
    others = iter(_OTHER_COLORS * 4)
    for name in names:
        out[name] = _FIXED_COLORS.get(name) or (FULL_COLOR if name == S.FULL else next(others))
    return out


def _label(name: str) -> str:
    return {"enrich": "ENRICH", "random": "Random", S.FULL: "Full training set"}.get(name, name)


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.figure
        assert isinstance(fig, Figure)
        return fig, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def readable(fig: Figure, min_pt: float = MIN_FONT_PT) -> Figure:
    """Raise every text of `fig` (tick labels, labels, titles, legends, notes) to `min_pt`.

    >>> fig = Figure(); ax = fig.add_subplot(); _ = ax.set_title("t", fontsize=6)
    >>> readable(fig).axes[0].title.get_fontsize()
    9.5
    """
    from matplotlib.text import Text

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for which in ("major", "minor"):
                ticks = axis.get_ticklabels(which=which)
                size = max([t.get_fontsize() for t in ticks] or [min_pt])
                axis.set_tick_params(which=which, labelsize=max(float(size), min_pt))
    for t in fig.findobj(Text):
        if float(t.get_fontsize()) < min_pt:
            t.set_fontsize(min_pt)
    return fig


def figure_png(fig: Figure, *, dpi: int = DPI) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------- Fig. 3


def plot_performance(
    table: pd.DataFrame,
    ax: Axes | None = None,
    *,
    metric: str | None = None,
    baseline: str = "random",
    alpha: float = S.ALPHA,
    shared_sizes: Collection[int] = (),
) -> Figure:
    """Fig. 3: test metric vs training-subset size, one line per strategy.

    Dots are the mean over all models at that size (all initializations × models), error
    bars one standard deviation. The size axis is logarithmic (the paper's sizes run from 2%
    to 88%; on a linear axis the small ones overlap), ticked at the measured sizes. Above
    each size, the stars compare each strategy with
    `baseline` (two-sided Mann-Whitney U; ns p > 0.05, * ≤ 0.05, ** ≤ 0.01, *** ≤ 0.001,
    **** ≤ 0.0001). Points circled in red are statistically indistinguishable from the
    models trained on the full training set (black dot, p > `alpha`).

    Parameters
    ----------
    table : DataFrame
        Checked results table.
    ax : Axes, optional
        Where to draw; a new phone-width figure by default, legend below the axes.
    metric : str, optional
        Which metric (default: the table's only one).
    baseline : str
        Strategy the stars compare against.
    alpha : float
        Significance level for the red circles.
    shared_sizes : collection of int
        Sizes at which every strategy trained on the same subset (the random starting set,
        :func:`enrich.evaluate.stats.shared_sizes`): drawn as one grey point, no stars.

    Returns
    -------
    Figure

    Examples
    --------
    >>> import pandas as pd
    >>> t = S.check_results(pd.DataFrame({
    ...     "strategy": ["enrich", "enrich", "random", "random", "full", "full"],
    ...     "size": [10, 10, 10, 10, 100, 100], "metric": "auc",
    ...     "value": [0.90, 0.91, 0.85, 0.86, 0.95, 0.96]}))
    >>> fig = plot_performance(t)
    >>> fig.axes[0].get_ylabel()
    'AUC (test set)'
    """
    metric = S.choose_metric(table, metric)
    own = ax is None
    fig, ax = _axes(ax, (PHONE_WIDTH_IN, 4.6))
    desc = S.describe(table, metric=metric)
    if desc.empty:
        raise EnrichError(f"no successful models with metric {metric!r} to plot")
    names = S.strategies(desc, baseline=baseline)
    colors = strategy_colors([*names, S.FULL])
    shared = {int(s) for s in shared_sizes}
    use_fraction = bool(np.isfinite(desc["fraction"]).all())
    x = desc["fraction"] * 100.0 if use_fraction else desc["size"].astype(float)
    log = bool((x > 0).all())
    # Dodge the strategies a little sideways so that overlapping error bars stay readable
    # (multiplicatively on the log axis: the same visual offset at every size).
    if log:
        span_x = max(float(np.log10(x.max() / x.min())), 0.5)
        shift = {n: (k - (len(names) - 1) / 2) * 0.01 * span_x for k, n in enumerate(names)}
        factor = 10.0 ** desc["strategy"].map(shift).fillna(0.0)
        moved = x * factor.where(~desc["size"].isin(shared), 1.0)
    else:
        span_x = float(x.max() - x.min()) or 1.0
        shift = {n: (k - (len(names) - 1) / 2) * 0.008 * span_x for k, n in enumerate(names)}
        dodge = desc["strategy"].map(shift).fillna(0.0)
        moved = x + dodge.where(~desc["size"].isin(shared), 0.0)
    desc = desc.assign(x0=x, x=moved)
    for name in names:
        d = desc.loc[desc["strategy"] == name].sort_values("x")
        ax.errorbar(
            d["x"],
            d["mean"],
            yerr=d["std"].fillna(0.0),
            color=colors[name],
            marker="o",
            ms=5,
            lw=1.6,
            capsize=3,
            label=f"{_label(name)}",
            zorder=3,
        )
    start = desc.loc[desc["size"].isin(shared) & (desc["strategy"] != S.FULL)]
    if not start.empty:
        # The same random starting subset for every strategy (the paper's grey point).
        ok = S.ok_results(table, metric=metric)
        ok = ok.loc[ok["size"].isin(shared) & (ok["strategy"] != S.FULL)]
        pooled = ok.groupby("size")["value"].agg(["mean", "std"]).reset_index()
        pooled = pooled.merge(start.groupby("size")["x"].first().reset_index(), on="size")
        ax.errorbar(
            pooled["x"],
            pooled["mean"],
            yerr=pooled["std"].fillna(0.0),
            color=colors.get("initial", "#8c8c8c"),
            marker="o",
            ms=7,
            capsize=3,
            ls="none",
            label="Shared starting set",
            zorder=4,
        )
    full = desc.loc[desc["strategy"] == S.FULL]
    if not full.empty:
        ax.errorbar(
            full["x"],
            full["mean"],
            yerr=full["std"].fillna(0.0),
            color=FULL_COLOR,
            marker="o",
            ms=7,
            capsize=3,
            ls="none",
            label=_label(S.FULL),
            zorder=4,
        )
        ax.axhline(float(full["mean"].iloc[0]), color=FULL_COLOR, lw=0.8, ls=":", zorder=1)
    cmp = S.compare_to_full(table, metric=metric, alpha=alpha)
    same = cmp.loc[cmp["indistinguishable"]].merge(
        desc, on=["strategy", "size"], suffixes=("", "_d")
    )
    if not same.empty:
        ax.scatter(
            same["x"],
            same["mean_d"],
            s=190,
            facecolors="none",
            edgecolors="red",
            linewidths=1.6,
            zorder=5,
        )
    # Stars above each size, one line per compared strategy, in that strategy's colour.
    tests = S.compare_to_baseline(table, baseline=baseline, metric=metric)
    tests = tests.loc[~tests["size"].isin(shared)]
    top = (desc["mean"] + desc["std"].fillna(0.0)).max()
    bottom = (desc["mean"] - desc["std"].fillna(0.0)).min()
    span = max(float(top - bottom), 1e-6)
    compared = [n for n in names if n != baseline]
    for k, name in enumerate(compared):
        t = tests.loc[tests["strategy"] == name].merge(
            desc.loc[desc["strategy"] == name, ["size", "x0"]], on="size"
        )
        for r in S.records(t):
            at = desc.loc[desc["size"] == r["size"]]
            y = float((at["mean"] + at["std"].fillna(0.0)).max()) + span * (0.04 + 0.07 * k)
            ax.text(
                float(r["x0"]),
                y,
                str(r["stars"]),
                ha="center",
                va="bottom",
                fontsize=9 if r["stars"] != "ns" else 8,
                color=colors[name] if len(compared) > 1 else "#222222",
            )
    ax.set_ylim(bottom - 0.05 * span, top + span * (0.12 + 0.07 * len(compared)))
    if log:
        ax.set_xscale("log")
        ticks = _spaced(sorted(set(desc["x0"].round(6).tolist())))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(
            FixedFormatter([_tick(t, percent=use_fraction) for t in ticks])
        )
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(min(ticks) / 1.25, max(ticks) * 1.25)
    ax.set_xlabel(
        ("Training images (% of full set, log scale)" if use_fraction else "Training images")
        if log
        else ("Training images (% of full set)" if use_fraction else "Training images")
    )
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.25, zorder=0)
    handles, labels = ax.get_legend_handles_labels()
    if not same.empty:
        handles.append(Line2D([], [], marker="o", ms=11, mfc="none", mec="red", ls="none", mew=1.6))
        labels.append(f"Same as full (p > {alpha:g})")
    if compared and not tests.empty:
        handles.append(Line2D([], [], ls="none"))
        vs = ", ".join(_label(n) for n in compared)
        labels.append(f"Stars: {vs} vs {_label(baseline)}")
    if own:  # below the axes, where it hides no point, in two columns
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=2,
            frameon=False,
            handlelength=1.2,
            columnspacing=1.0,
            handletextpad=0.5,
        )
    else:
        ax.legend(handles, labels, loc="lower right", frameon=True)
    return readable(fig) if own else fig  # a caller's own figure keeps its fonts


def _spaced(ticks: list[float], *, min_ratio: float = 1.45) -> list[float]:
    """Measured sizes to tick on a log axis, dropping any too close to its neighbour.

    The largest size is always kept.

    >>> _spaced([2, 7, 11, 22, 33, 44, 55, 66, 77, 88, 100])
    [2, 7, 11, 22, 33, 55, 100]
    """
    if not ticks:
        return []
    kept = [ticks[0]]
    for t in ticks[1:]:
        if t / kept[-1] >= min_ratio:
            kept.append(t)
    if kept[-1] != ticks[-1]:
        if len(kept) > 1 and ticks[-1] / kept[-1] < min_ratio:
            kept[-1] = ticks[-1]
        else:
            kept.append(ticks[-1])
    return kept


def _tick(x: float, *, percent: bool) -> str:
    """A tick label: a percentage, or a count of images.

    >>> _tick(2.0, percent=True), _tick(12.5, percent=True), _tick(1500, percent=False)
    ('2%', '12.5%', '1,500')
    """
    if percent:
        return f"{x:.0f}%" if abs(x - round(x)) < 0.05 else f"{x:.1f}%"
    return f"{x:,.0f}"


# --------------------------------------------------------------------------- Fig. 4


def _fmt_hours(h: float) -> str:
    if h >= 10:
        return f"{h:,.0f} h"
    if h >= 1:
        return f"{h:.1f} h"
    if h * 60 >= 10:
        return f"{h * 60:.0f} min"
    if h * 60 >= 1:
        return f"{h * 60:.1f} min"
    return f"{h * 3600:.0f} s"


def plot_labeling_time(
    table: pd.DataFrame,
    ax: Axes | None = None,
    *,
    seconds_per_image: float,
    n_train: int | None = None,
    metric: str | None = None,
    alpha: float = S.ALPHA,
    rule: S.Rule = "sustained",
) -> Figure:
    """Fig. 4: hours of expert labeling for the full training set vs each strategy's subset.

    Each strategy's bar is the time to label its smallest subset that is statistically
    indistinguishable from the full set (:func:`enrich.evaluate.stats.labeling_time`); a
    strategy that never gets there needs the full set.

    Parameters
    ----------
    table : DataFrame
        Checked results table.
    ax : Axes, optional
        Where to draw.
    seconds_per_image : float
        Labeling time per image (3 s classification, 300 s segmentation in the paper).
    n_train : int, optional
        Training-set size (default: the size of the full-set models).

    Returns
    -------
    Figure
    """
    times = S.labeling_time(
        table,
        seconds_per_image=seconds_per_image,
        n_train=n_train,
        metric=metric,
        alpha=alpha,
        rule=rule,
    )
    own = ax is None
    fig, ax = _axes(ax, (PHONE_WIDTH_IN, 3.8))
    colors = strategy_colors([*times["strategy"], S.FULL])
    n = int(times["n_train"].iloc[0]) if len(times) else int(n_train or 0)
    hours_full = n * seconds_per_image / 3600.0
    labels = [f"Label everything\n({n:,} images)"]
    heights = [hours_full]
    bar_colors = [FULL_COLOR]
    notes = [""]
    for r in S.records(times):
        labels.append(f"{_label(r['strategy'])}\n({round(float(r['size'])):,} images)")
        heights.append(float(r["hours_needed"]))
        bar_colors.append(colors[r["strategy"]])
        saved = f"saves {_fmt_hours(float(r['hours_saved']))}"
        if r["reached"]:
            notes.append(saved)
        else:  # too few models to tell is not the same as "needs everything"
            notes.append("cannot tell" if r["cannot_tell"] else "full set needed")
    xs = np.arange(len(heights))
    ax.bar(xs, heights, color=bar_colors, width=0.6, zorder=2)
    for x, h, note in zip(xs.tolist(), heights, notes, strict=True):
        ax.text(x, h, f"{_fmt_hours(h)}\n{note}".strip(), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(xs, labels, fontsize=9)
    ax.set_ylabel("Expert labeling time (hours)")
    ax.set_ylim(0, max(heights) * 1.3 if max(heights) > 0 else 1)
    ax.set_title(f"At {seconds_per_image:g} s per image", fontsize=10)
    ax.grid(axis="y", alpha=0.25, zorder=0)
    return readable(fig) if own else fig  # a caller's own figure keeps its fonts


# --------------------------------------------------------------------------- Fig. 5


def plot_pooled(
    table: pd.DataFrame,
    ax: Axes | None = None,
    *,
    metric: str | None = None,
    baseline: str = "random",
    shared_sizes: Collection[int] = (),
) -> Figure:
    """Fig. 5: standardized performance pooled over all subset sizes, per strategy.

    Each model's metric is z-scored against all models of the same subset size (so 0 is
    "average for that budget") and the z-scores of all sizes are pooled; violins show their
    distribution, boxes the quartiles. The p-value is a two-sided Mann-Whitney U test of
    each strategy vs `baseline` (:func:`enrich.evaluate.stats.pooled_comparison`). Sizes in
    `shared_sizes` (the shared random starting set) are left out.

    Returns
    -------
    Figure
    """
    pooled = S.pooled_comparison(
        table, metric=metric, baseline=baseline, exclude_sizes=shared_sizes
    )
    own = ax is None
    # one title line per strategy: the figure grows with them
    fig, ax = _axes(ax, (PHONE_WIDTH_IN, 4.0 + 0.3 * max(0, len(pooled.tests) - 1)))
    values = pooled.values
    names = S.strategies(values, baseline=baseline)
    if not names:
        raise EnrichError("no subset sizes with two or more strategies to pool")
    colors = strategy_colors(names)
    data = [values.loc[values["strategy"] == n, "z"].to_numpy() for n in names]
    xs = np.arange(1, len(names) + 1)
    nonempty = [i for i, d in enumerate(data) if len(d) > 1]
    if nonempty:
        parts: Any = ax.violinplot(
            [data[i] for i in nonempty], positions=xs[nonempty], showextrema=False, widths=0.8
        )
        for i, body in zip(nonempty, parts["bodies"], strict=True):
            body.set_facecolor(colors[names[i]])
            body.set_edgecolor(colors[names[i]])
            body.set_alpha(0.35)
    ax.boxplot(
        data,
        positions=xs,
        widths=0.25,
        showfliers=False,
        medianprops={"color": "black"},
    )
    rng = np.random.default_rng(0)  # jitter only, fixed so the figure is reproducible
    for x, d, n in zip(xs, data, names, strict=True):
        ax.scatter(
            x + rng.uniform(-0.08, 0.08, len(d)), d, s=6, color=colors[n], alpha=0.6, zorder=3
        )
    many = len(names) > 3  # long names side by side overlap at phone width
    ax.set_xticks(
        xs, [_label(n) for n in names], rotation=30 if many else 0, ha="right" if many else "center"
    )
    ax.set_ylabel("z-score within each size")
    ax.axhline(0, color="#888888", lw=0.8, ls=":")
    lines = []
    tests = pooled.tests
    # Several strategies against one baseline: Holm's correction over them (as the verdict).
    corrected = len(tests) > 1
    if corrected:
        from enrich.evaluate.verdict import holm

        tests = tests.assign(p=holm(tests["p"].to_numpy()))
        tests = tests.assign(stars=[S.stars(p) for p in tests["p"]])
    for r in S.records(tests):
        p = "n/a" if not np.isfinite(r["p"]) else f"{r['p']:.2g}"
        name, base = _label(r["strategy"]), _label(r["baseline"])
        if r["underpowered"]:  # 1 vs 1 models, say: no p-value it gives is a result
            lines.append(f"{name} vs {base}: cannot tell ({r['n']} vs {r['n_baseline']})")
        else:
            what = "Holm p" if corrected else "MWU p"
            lines.append(f"{name} vs {base}: {what} = {p} ({r['stars']})")
    if lines:
        ax.set_title("\n".join(lines), fontsize=MIN_FONT_PT)
    ax.grid(axis="y", alpha=0.25)
    return readable(fig) if own else fig  # a caller's own figure keeps its fonts


# --------------------------------------------------------------------------- Fig. 1


def plot_redundancy_cdf(max_similarity: Mapping[str, np.ndarray], ax: Axes | None = None) -> Figure:
    """Fig. 1: cumulative distribution of each image's maximum similarity to any other.

    Delegates to :func:`enrich.redundancy.plot_cdf` (one curve per named dataset).

    Parameters
    ----------
    max_similarity : mapping of str to ndarray of shape (n_images,)
        Dataset name → each image's maximum cosine similarity to any other image.
    """
    try:
        from enrich.redundancy import plot_cdf
    except ImportError as exc:  # the redundancy module has not landed in this build
        raise EnrichError("the redundancy CDF needs enrich.redundancy.plot_cdf") from exc
    fig = plot_cdf(dict(max_similarity), ax=ax)
    if isinstance(fig, Figure):
        return fig
    if ax is not None and isinstance(ax.figure, Figure):
        return ax.figure
    raise EnrichError("enrich.redundancy.plot_cdf did not return a figure")
