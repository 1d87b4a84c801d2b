"""Statistics of a benchmark run: pure functions over the results table.

The results table has one row per trained model (``docs/architecture.md``)::

    strategy, init, size, fraction, model, seed, metric, value, status, error, wall_s

``strategy`` is a selector name (``enrich``, ``random``, ...) or ``full`` for the reference
models trained on 100% of the training set. Only rows with ``status == "ok"`` and a finite
``value`` enter the statistics; failed rows are counted (:func:`failures`) and reported.

What is computed, as in Chinn et al. (JAMIA 2023), Methods → "Statistical Comparisons":

- per (strategy, size): n, mean and standard deviation (:func:`describe`);
- each strategy vs a baseline strategy (``random``) at each size: two-sided Mann-Whitney U
  with the paper's stars (:func:`compare_to_baseline`, :func:`stars`);
- each strategy at each size vs the full-set models: two-sided Mann-Whitney U; a point with
  p > alpha is *statistically indistinguishable from the full set* (the red circles of
  Fig. 3; :func:`compare_to_full`);
- the smallest subset that is indistinguishable from the full set, per strategy
  (:func:`smallest_equivalent`; the headline "ENRICH needs 55%, random 100%");
- the standardized pooled comparison of Fig. 5 (:func:`pooled_comparison`);
- coverage, Table 2: images, patients and clips per class in each subset (:func:`coverage`);
- labeling time saved, Fig. 4 (:func:`labeling_time`).

A word on power: a two-sided Mann-Whitney U test of n1 vs n2 values can never give a
p-value below ``2 / C(n1 + n2, n1)`` (:func:`min_attainable_p`). With 2 models per point
nothing is ever "significant", so p > alpha carries no evidence at all. Such comparisons are
``underpowered``: their verdict is ``"cannot tell"`` (never "indistinguishable"), they never
count towards the smallest sufficient subset or the hours saved, and :func:`models_needed`
says how many models per point would make the test able to reach alpha.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from enrich.errors import EnrichError, first_few
from enrich.evaluate.results import RESULT_COLUMNS  # the contract, defined once

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ALPHA",
    "FULL",
    "RESULT_COLUMNS",
    "PooledComparison",
    "check_results",
    "choose_metric",
    "compare_to_baseline",
    "compare_to_full",
    "coverage",
    "describe",
    "failures",
    "labeling_time",
    "min_attainable_p",
    "missing_models",
    "models_needed",
    "mwu",
    "ok_results",
    "pooled_comparison",
    "read_results",
    "records",
    "shared_sizes",
    "smallest_equivalent",
    "stars",
    "strategies",
]

#: Significance level used throughout, as in the paper.
ALPHA = 0.05
#: The ``strategy`` value of the reference models trained on the whole training set.
FULL = "full"
_REQUIRED = ("strategy", "size", "metric", "value")
# Metrics in order of preference when a table holds several.
_PREFERRED_METRICS = ("auc", "jaccard")

Rule = Literal["sustained", "first"]


# --------------------------------------------------------------------------- reading


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and check ``results.csv`` (or the ``results.csv`` inside a run folder).

    Parameters
    ----------
    path : path-like
        A benchmark run folder or its ``results.csv``. An incomplete last line (a run
        still appending, or killed mid-write) is ignored.

    Returns
    -------
    DataFrame
        The checked table (see :func:`check_results`).

    Raises
    ------
    EnrichError
        If the file is missing, empty, or lacks the columns of a results table.
    """
    import pandas as pd

    path = Path(path)
    csv = path / "results.csv" if path.is_dir() else path
    if not csv.is_file():
        raise EnrichError(
            f"{path} is not a benchmark run: {csv.name} not found "
            "(expected a folder written by `enrich benchmark`)"
        )
    data = csv.read_bytes()
    if data and not data.endswith(b"\n"):
        # A run still writing (or killed mid-append): its last line is not complete yet.
        data = data[: data.rfind(b"\n") + 1]
    try:
        table = pd.read_csv(io.BytesIO(data), dtype={"strategy": str, "metric": str, "status": str})
    except pd.errors.EmptyDataError:
        raise EnrichError(f"{csv} is empty; expected one row per trained model") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise EnrichError(f"{csv} is not a readable CSV results table: {exc}") from None
    from enrich._csv import unescape_frame
    from enrich.evaluate.results import drop_duplicate_models

    table = unescape_frame(table)  # error cells quoting '=...' file names were escaped
    return drop_duplicate_models(check_results(table, source=str(csv)), source=str(csv))


def check_results(table: pd.DataFrame, *, source: str = "results table") -> pd.DataFrame:
    """Validate a results table and return a normalised copy.

    Missing optional columns get defaults (``status="ok"``, ``init=0``, ``model`` = row
    number within its group, ``fraction`` = size / largest size, ``error=""``). ``size``
    becomes int, ``value`` float, ``strategy``/``metric``/``status`` str.

    Parameters
    ----------
    table : DataFrame
        One row per trained model.
    source : str
        Name used in error messages (e.g. the file path).

    Raises
    ------
    EnrichError
        If required columns are missing, the table has no rows, or a column has
        values of the wrong kind.

    Examples
    --------
    >>> import pandas as pd
    >>> t = check_results(pd.DataFrame({"strategy": ["enrich"], "size": [10],
    ...                                 "metric": ["auc"], "value": [0.9]}))
    >>> t.loc[0, "status"], int(t.loc[0, "init"])
    ('ok', 0)
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise EnrichError(f"{source}: expected a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise EnrichError(
            f"{source} lacks column(s) {', '.join(missing)}; expected {', '.join(RESULT_COLUMNS)}"
        )
    if len(table) == 0:
        raise EnrichError(f"{source} has no rows; expected one row per trained model")
    t = table.copy()
    t["strategy"] = t["strategy"].astype(str).str.strip()
    t["metric"] = t["metric"].astype(str).str.strip()
    if "status" not in t.columns:
        t["status"] = "ok"
    t["status"] = t["status"].fillna("ok").astype(str).str.strip().str.lower()
    bad_status = sorted(set(t["status"]) - {"ok", "failed"})
    if bad_status:
        raise EnrichError(
            f"{source}: unknown status {first_few(bad_status)}; expected ok or failed"
        )
    for col in ("size", "value", "fraction", "init", "model", "wall_s"):
        if col in t.columns:
            t[col] = pd.to_numeric(t[col], errors="coerce")
    if t["size"].isna().any() or (t["size"] < 0).any():
        bad = t.loc[t["size"].isna() | (t["size"] < 0), "size"].tolist()
        raise EnrichError(f"{source}: size must be a non-negative integer, got {first_few(bad)}")
    t["size"] = t["size"].astype(int)
    if "init" not in t.columns:
        t["init"] = 0
    t["init"] = t["init"].fillna(-1).astype(int)
    if "model" not in t.columns:
        t["model"] = t.groupby(["strategy", "init", "size", "metric"]).cumcount()
    t["model"] = t["model"].fillna(-1).astype(int)
    if "fraction" not in t.columns:
        t["fraction"] = np.nan
    largest = int(t["size"].max())
    if largest > 0:
        t["fraction"] = t["fraction"].fillna(t["size"] / largest)
    if "error" not in t.columns:
        t["error"] = ""
    t["error"] = t["error"].astype(object).where(t["error"].notna(), "").astype(str)
    # A row marked ok with a missing/non-finite value cannot enter the statistics.
    nonfinite = (t["status"] == "ok") & ~np.isfinite(t["value"].to_numpy(dtype=float))
    if nonfinite.any():
        t.loc[nonfinite, "status"] = "failed"
        t.loc[nonfinite & (t["error"] == ""), "error"] = "non-finite metric value"
    return t.reset_index(drop=True)


def choose_metric(table: pd.DataFrame, metric: str | None = None) -> str:
    """The metric to analyse: `metric` if given, else the table's only (or preferred) one.

    >>> import pandas as pd
    >>> choose_metric(pd.DataFrame({"metric": ["jaccard", "auc"]}))
    'auc'
    """
    present = list(dict.fromkeys(table["metric"].astype(str)))
    if metric is not None:
        if metric not in present:
            raise EnrichError(
                f"metric {metric!r} is not in the results; found {first_few(present)}"
            )
        return metric
    if not present:
        raise EnrichError("the results table has no metric values")
    for m in _PREFERRED_METRICS:
        if m in present:
            return m
    return present[0]


def ok_results(table: pd.DataFrame, *, metric: str | None = None) -> pd.DataFrame:
    """Rows that enter the statistics: status ok, finite value, the chosen metric."""
    metric = choose_metric(table, metric)
    keep = (table["status"] == "ok") & (table["metric"] == metric)
    keep &= np.isfinite(table["value"].to_numpy(dtype=float))
    return table.loc[keep].reset_index(drop=True)


def strategies(table: pd.DataFrame, *, baseline: str | None = "random") -> list[str]:
    """Subset strategies in display order: ``enrich`` first, the baseline last, no ``full``.

    >>> import pandas as pd
    >>> strategies(pd.DataFrame({"strategy": ["random", "full", "kcenter", "enrich"]}))
    ['enrich', 'kcenter', 'random']
    """
    names = sorted(set(table["strategy"].astype(str)) - {FULL})
    first = [n for n in names if n == "enrich"]
    last = [n for n in names if n == baseline]
    return first + [n for n in names if n not in first and n not in last] + last


def failures(table: pd.DataFrame) -> pd.DataFrame:
    """Failed models, counted per (strategy, size, error).

    Returns
    -------
    DataFrame
        Columns ``strategy, size, error, n_failed``; empty when nothing failed.
    """
    failed = table.loc[table["status"] != "ok"]
    out = (
        failed.groupby(["strategy", "size", "error"], dropna=False)
        .size()
        .rename("n_failed")
        .reset_index()
    )
    return out.sort_values(["strategy", "size"]).reset_index(drop=True)


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a table as plain dicts (column → value), for loops that read fields.

    >>> import pandas as pd
    >>> records(pd.DataFrame({"a": [1], "b": ["x"]}))
    [{'a': 1, 'b': 'x'}]
    """
    cols = [str(c) for c in table.columns]
    return [dict(zip(cols, row, strict=True)) for row in table.itertuples(index=False, name=None)]


# --------------------------------------------------------------------------- tests


@dataclass(frozen=True)
class MWU:
    """A two-sided Mann-Whitney U test: the U statistic of the first sample and p."""

    statistic: float
    pvalue: float


def mwu(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> MWU:
    """Two-sided Mann-Whitney U test of `x` vs `y` (``scipy.stats.mannwhitneyu``).

    scipy's default method is used: exact for small samples without ties, otherwise the
    normal approximation with tie correction. Two samples that are all the same value
    give p = 1. An empty sample gives NaN.

    Parameters
    ----------
    x, y : array-like of shape (n1,), (n2,)
        Metric values (e.g. AUC of each model).

    Examples
    --------
    >>> round(mwu([1, 2, 3, 4], [5, 6, 7, 8]).pvalue, 4)
    0.0286
    """
    from scipy.stats import mannwhitneyu

    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if len(a) == 0 or len(b) == 0:
        return MWU(math.nan, math.nan)
    if np.ptp(np.concatenate([a, b])) == 0:
        # Every value equal: no evidence of a difference (scipy agrees, but warns on some paths).
        return MWU(len(a) * len(b) / 2.0, 1.0)
    res = mannwhitneyu(a, b, alternative="two-sided")
    return MWU(float(res.statistic), float(res.pvalue))


def stars(p: float) -> str:
    """The paper's notation for a p-value.

    ``ns`` p > 0.05; ``*`` p ≤ 0.05; ``**`` p ≤ 0.01; ``***`` p ≤ 0.001; ``****`` p ≤ 0.0001.
    NaN (no test possible) gives ``""``.

    >>> [stars(p) for p in (0.2, 0.05, 0.01, 0.001, 0.0001, float("nan"))]
    ['ns', '*', '**', '***', '****', '']
    """
    if p is None or not np.isfinite(p):
        return ""
    for cut, mark in ((1e-4, "****"), (1e-3, "***"), (1e-2, "**"), (5e-2, "*")):
        if p <= cut:
            return mark
    return "ns"


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney U test of n1 vs n2 values can give.

    ``2 / C(n1 + n2, n1)`` (capped at 1): the two most extreme orderings. When this is
    above alpha, "not significant" says nothing: the test had no power.

    >>> min_attainable_p(2, 2), round(min_attainable_p(4, 4), 4)
    (0.3333333333333333, 0.0286)
    """
    if n1 <= 0 or n2 <= 0:
        return math.nan
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def models_needed(alpha: float = ALPHA, *, n_other: int | None = None) -> int:
    """The fewest models per group with which a two-sided Mann-Whitney U test can reach alpha.

    With `n_other` the other group's size is fixed (e.g. the full-set models already
    trained); without it both groups get the same number of models.

    >>> models_needed(0.05), models_needed(0.05, n_other=10), models_needed(0.05, n_other=1)
    (4, 2, 39)
    """
    if not 0 < alpha < 1:
        raise EnrichError(f"alpha={alpha}; expected a number between 0 and 1")
    if n_other is not None and n_other < 1:
        raise EnrichError(f"n_other={n_other}; expected at least 1 model")
    n = 1
    while min_attainable_p(n, n if n_other is None else n_other) > alpha:
        n += 1
    return n


def missing_models(
    table: pd.DataFrame,
    *,
    strategies: Sequence[str],
    sizes: Sequence[int],
    initializations: int,
    models: int,
    full: bool = True,
) -> pd.DataFrame:
    """Models the protocol planned that are not in the results table (an incomplete run).

    The benchmark trains `models` × `initializations` models per (strategy, size), and as
    many on the full training set when `full`. A model is present when its row is in the
    table, finished or failed (failures are counted by :func:`failures`); a row repeated by
    a resumed run counts once, by its ``(init, model)``.

    Parameters
    ----------
    table : DataFrame
        Checked results (any metric).
    strategies : sequence of str
        The configured subset strategies (``full`` excluded).
    sizes : sequence of int
        The subset sizes the run planned, in images.
    initializations, models : int
        From the run's configuration.
    full : bool
        Whether full-set models were planned.

    Returns
    -------
    DataFrame
        One row per (strategy, size) with models missing: ``strategy, size, planned,
        present, missing``; ``size`` is NaN for the full set. Empty when the run is complete.

    Examples
    --------
    >>> import pandas as pd
    >>> t = check_results(pd.DataFrame({"strategy": ["enrich", "full"], "size": [5, 50],
    ...                                 "metric": "auc", "value": [0.8, 0.9]}))
    >>> missing_models(t, strategies=["enrich"], sizes=[5], initializations=1,
    ...                models=2)["missing"].tolist()
    [1, 1]
    """
    import pandas as pd

    per_point = int(initializations) * int(models)
    planned: list[tuple[str, float]] = [(s, float(k)) for s in strategies for k in sizes]
    if full:
        planned.append((FULL, math.nan))
    keys = table.drop_duplicates(["strategy", "init", "size", "model"])
    rows = []
    for name, size in planned:
        mine = keys.loc[keys["strategy"] == name]
        if name != FULL:
            mine = mine.loc[mine["size"] == size]
        present = min(per_point, len(mine.drop_duplicates(["init", "model"])))
        if present < per_point:
            rows.append(
                {
                    "strategy": name,
                    "size": size,
                    "planned": per_point,
                    "present": present,
                    "missing": per_point - present,
                }
            )
    return pd.DataFrame(rows, columns=["strategy", "size", "planned", "present", "missing"])


# --------------------------------------------------------------------------- per size


def describe(table: pd.DataFrame, *, metric: str | None = None) -> pd.DataFrame:
    """n, mean and standard deviation per (strategy, size), the full-set models included.

    Parameters
    ----------
    table : DataFrame
        A checked results table (:func:`check_results`).
    metric : str, optional
        Which metric; by default the table's only one (``auc`` preferred, then
        ``jaccard``).

    Returns
    -------
    DataFrame
        Columns ``strategy, size, fraction, n, mean, std`` (std with ddof=1; NaN for n=1),
        sorted by strategy and size.
    """
    ok = ok_results(table, metric=metric)
    g = ok.groupby(["strategy", "size"], sort=True)
    out = g.agg(
        fraction=("fraction", "mean"),
        n=("value", "size"),
        mean=("value", "mean"),
        std=("value", "std"),
    ).reset_index()
    return out


def compare_to_baseline(
    table: pd.DataFrame, *, baseline: str = "random", metric: str | None = None
) -> pd.DataFrame:
    """Each strategy vs `baseline` at each size: two-sided Mann-Whitney U and stars.

    Only sizes where both the strategy and the baseline have results are compared.

    Returns
    -------
    DataFrame
        Columns ``strategy, baseline, size, n, n_baseline, mean, mean_baseline, U, p,
        stars, underpowered``; one row per (strategy ≠ baseline, size). ``underpowered``:
        with these n the test cannot give p ≤ 0.05 (:func:`min_attainable_p`), so its
        ``ns`` says nothing.
    """
    import pandas as pd

    ok = ok_results(table, metric=metric)
    base = ok.loc[ok["strategy"] == baseline]
    rows = []
    for name in strategies(ok, baseline=baseline):
        if name == baseline:
            continue
        mine = ok.loc[ok["strategy"] == name]
        for size in sorted(set(mine["size"]) & set(base["size"])):
            x = mine.loc[mine["size"] == size, "value"].to_numpy()
            y = base.loc[base["size"] == size, "value"].to_numpy()
            test = mwu(x, y)
            rows.append(
                {
                    "strategy": name,
                    "baseline": baseline,
                    "size": int(size),
                    "n": len(x),
                    "n_baseline": len(y),
                    "mean": float(np.mean(x)),
                    "mean_baseline": float(np.mean(y)),
                    "U": test.statistic,
                    "p": test.pvalue,
                    "stars": stars(test.pvalue),
                    "underpowered": bool(min_attainable_p(len(x), len(y)) > ALPHA),
                }
            )
    columns = ["strategy", "baseline", "size", "n", "n_baseline", "mean", "mean_baseline"]
    out = pd.DataFrame(rows, columns=[*columns, "U", "p", "stars", "underpowered"])
    return out.astype({"underpowered": bool})


def compare_to_full(
    table: pd.DataFrame, *, metric: str | None = None, alpha: float = ALPHA
) -> pd.DataFrame:
    """Each strategy at each size vs the full-set models (two-sided Mann-Whitney U).

    Parameters
    ----------
    table : DataFrame
        A checked results table with ``strategy == "full"`` rows.
    metric : str, optional
        Which metric (see :func:`describe`).
    alpha : float
        Significance level.

    Returns
    -------
    DataFrame
        One row per (strategy, size), columns:

        - ``n, n_full, mean, mean_full, U, p, stars``;
        - ``underpowered``: the smallest p the test could give with n vs n_full models is
          above alpha (:func:`min_attainable_p`), so p > alpha carries no evidence;
        - ``indistinguishable``: p > alpha with a test that could have reached alpha (not
          underpowered) — the paper's red circles;
        - ``direction``: ``"same"`` (indistinguishable), ``"better"`` or ``"worse"`` (p ≤
          alpha, by the sign of mean − mean_full), or ``"cannot tell"`` (underpowered).

        Empty when there are no usable full-set models.
    """
    import pandas as pd

    columns = [
        "strategy",
        "size",
        "n",
        "n_full",
        "mean",
        "mean_full",
        "U",
        "p",
        "stars",
        "indistinguishable",
        "direction",
        "underpowered",
    ]
    ok = ok_results(table, metric=metric)
    full = ok.loc[ok["strategy"] == FULL, "value"].to_numpy()
    rows = []
    if len(full):
        full_mean = float(np.mean(full))
        for name in strategies(ok, baseline=None):
            mine = ok.loc[ok["strategy"] == name]
            for size in sorted(set(mine["size"])):
                x = mine.loc[mine["size"] == size, "value"].to_numpy()
                test = mwu(x, full)
                under = bool(min_attainable_p(len(x), len(full)) > alpha)
                same = bool(test.pvalue > alpha) and not under
                mean = float(np.mean(x))
                if under:
                    direction = "cannot tell"
                elif same:
                    direction = "same"
                else:
                    direction = "better" if mean > full_mean else "worse"
                rows.append(
                    {
                        "strategy": name,
                        "size": int(size),
                        "n": len(x),
                        "n_full": len(full),
                        "mean": mean,
                        "mean_full": full_mean,
                        "U": test.statistic,
                        "p": test.pvalue,
                        "stars": stars(test.pvalue),
                        "indistinguishable": same,
                        "direction": direction,
                        "underpowered": under,
                    }
                )
    out = pd.DataFrame(rows, columns=columns)
    return out.astype({"indistinguishable": bool, "underpowered": bool})


def smallest_equivalent(
    table: pd.DataFrame,
    *,
    metric: str | None = None,
    alpha: float = ALPHA,
    rule: Rule = "sustained",
    n_train: int | None = None,
) -> pd.DataFrame:
    """The smallest subset that matches the full training set, per strategy.

    Two definitions, both reported:

    - ``first`` (the paper's reading of Fig. 3): the smallest size whose models are
      statistically indistinguishable from the full-set models (two-sided MWU p > alpha;
      the first red circle).
    - ``sustained`` (used for the headline): the smallest size s such that s and every
      larger measured size of that strategy are *not worse* than the full set, i.e.
      indistinguishable (p > alpha) or significantly *better*. One lucky non-significant
      point at a small size, followed by significantly worse points, does not count; a
      subset that beats the full set does.

    Only comparisons that could reach p ≤ alpha count: an underpowered point (2 models vs 2,
    say) is ``"cannot tell"``, never a match. A strategy that never qualifies "needs the full
    set": ``reached`` is False and the size is ``n_train`` (fraction 1.0), unless
    ``cannot_tell``: the rule would be met if its underpowered points were matches, so the
    run cannot say either way.

    Parameters
    ----------
    table : DataFrame
        Checked results with ``full`` rows.
    metric, alpha
        See :func:`compare_to_full`.
    rule : {"sustained", "first"}
        Which definition fills the ``size``/``fraction``/``reached`` columns.
    n_train : int, optional
        Training-set size; by default the size of the ``full`` rows.

    Returns
    -------
    DataFrame
        One row per strategy: ``strategy, size, fraction, reached, rule, direction,
        first_size, first_fraction, sustained_size, sustained_fraction, underpowered``.
        ``direction`` is the chosen point's ``"same"`` or ``"better"`` (``""`` when not
        reached); ``underpowered``: some size of the strategy could not be tested (too few
        models); ``cannot_tell``: not reached, but only because of such sizes.
        ``first_*``/``sustained_*`` are NaN where that rule is not met.
    """
    import pandas as pd

    if rule not in ("sustained", "first"):
        raise EnrichError(f"rule={rule!r}; expected 'sustained' or 'first'")
    cmp = compare_to_full(table, metric=metric, alpha=alpha)
    n_full = _n_train(table, n_train)
    fractions = _fractions(table, metric=metric, n_train=n_full)
    rows = []
    for name in strategies(ok_results(table, metric=metric), baseline=None):
        c = cmp.loc[cmp["strategy"] == name].sort_values("size")
        sizes = c["size"].to_numpy()
        same = c["indistinguishable"].to_numpy(dtype=bool)
        direction_all = c["direction"].to_numpy()
        fine = same | (direction_all == "better")
        unknown = direction_all == "cannot tell"
        first = sizes[same][0] if same.any() else None
        sustained = None
        for i in range(len(sizes)):
            if fine[i:].all():
                sustained = sizes[i]
                break
        chosen = sustained if rule == "sustained" else first
        at = c.loc[c["size"] == chosen]
        direction = str(at["direction"].iloc[0]) if chosen is not None and len(at) else ""
        # Could the rule be met if the untestable points were matches? Then nobody can tell.
        hopeful = fine | unknown
        possible = (
            any(hopeful[i:].all() for i in range(len(sizes)))
            if rule == "sustained"
            else bool(hopeful.any())
        )
        cannot_tell = chosen is None and bool(unknown.any()) and possible
        rows.append(
            {
                "strategy": name,
                "size": float(chosen) if chosen is not None else float(n_full or np.nan),
                "fraction": fractions.get((name, chosen), np.nan) if chosen is not None else 1.0,
                "reached": chosen is not None,
                "rule": rule,
                "direction": direction,
                "first_size": float(first) if first is not None else np.nan,
                "first_fraction": fractions.get((name, first), np.nan)
                if first is not None
                else np.nan,
                "sustained_size": float(sustained) if sustained is not None else np.nan,
                "sustained_fraction": fractions.get((name, sustained), np.nan)
                if sustained is not None
                else np.nan,
                "underpowered": bool(unknown.any()),
                "cannot_tell": cannot_tell,
            }
        )
    columns = [
        "strategy",
        "size",
        "fraction",
        "reached",
        "rule",
        "direction",
        "first_size",
        "first_fraction",
        "sustained_size",
        "sustained_fraction",
        "underpowered",
        "cannot_tell",
    ]
    out = pd.DataFrame(rows, columns=columns)
    return out.astype({"reached": bool, "underpowered": bool, "cannot_tell": bool})


def _n_train(table: pd.DataFrame, n_train: int | None) -> int | None:
    if n_train is not None:
        return int(n_train)
    full = table.loc[table["strategy"] == FULL, "size"]
    return int(full.max()) if len(full) else None


def _fractions(
    table: pd.DataFrame, *, metric: str | None, n_train: int | None
) -> dict[tuple[str, object], float]:
    """(strategy, size) -> fraction of the training set (from the table, else size/n_train)."""
    ok = ok_results(table, metric=metric)
    out: dict[tuple[str, object], float] = {}
    means = ok.groupby(["strategy", "size"])["fraction"].mean().reset_index()
    for r in records(means):
        frac = float(r["fraction"])
        if n_train and not np.isfinite(frac):
            frac = r["size"] / n_train
        out[(str(r["strategy"]), int(r["size"]))] = frac
    return out


# --------------------------------------------------------------------------- Fig. 5


@dataclass(frozen=True)
class PooledComparison:
    """The standardized pooled comparison (the paper's Fig. 5).

    Attributes
    ----------
    values : DataFrame
        One row per model: ``strategy, size, init, model, value, z``.
    tests : DataFrame
        One row per strategy ≠ baseline: ``strategy, baseline, n, n_baseline,
        mean_z, mean_z_baseline, U, p, stars, underpowered`` (``underpowered``: with these
        n the test cannot give p ≤ 0.05, e.g. 1 model vs 1).
    sizes : tuple of int
        The sizes that were pooled.
    """

    values: pd.DataFrame
    tests: pd.DataFrame
    sizes: tuple[int, ...]


def pooled_comparison(
    table: pd.DataFrame,
    *,
    baseline: str = "random",
    metric: str | None = None,
    ddof: int = 0,
    exclude_sizes: Iterable[int] = (),
) -> PooledComparison:
    """Standardize at each size, pool across sizes, compare strategies (Fig. 5).

    At each subset size where at least two strategies have results, all models of all
    subset strategies at that size (the full-set models excluded) are z-scored together:
    ``z = (value − mean) / sd`` with that size's mean and standard deviation, so that every
    size has mean 0 and SD 1 (``ddof=0``). A size whose values are all equal gets z = 0.
    The z-values are then pooled across sizes and each strategy is compared with
    `baseline` by a two-sided Mann-Whitney U test. This asks "across all budgets, does one
    strategy sit higher than the other?", without the large differences between sizes
    swamping the comparison.

    Parameters
    ----------
    table : DataFrame
        Checked results.
    baseline : str
        The strategy every other one is compared with.
    metric : str, optional
        See :func:`describe`.
    ddof : int
        Degrees of freedom of the per-size SD (0: the z-scores have SD exactly 1).
    exclude_sizes : iterable of int
        Sizes left out, e.g. the shared random starting set (:func:`shared_sizes`), where
        every strategy trained on the same images and there is nothing to compare.

    Returns
    -------
    PooledComparison
    """
    import pandas as pd

    ok = ok_results(table, metric=metric)
    ok = ok.loc[(ok["strategy"] != FULL) & ~ok["size"].isin([int(x) for x in exclude_sizes])]
    per_size = ok.groupby("size")["strategy"].nunique()
    sizes = tuple(int(s) for s in per_size.index[per_size >= 2])
    sub = ok.loc[ok["size"].isin(sizes), ["strategy", "size", "init", "model", "value"]].copy()
    grouped = sub.groupby("size")["value"]
    mean = grouped.transform("mean")
    sd = grouped.transform(
        lambda v: float(np.std(v.to_numpy(), ddof=ddof)) if len(v) > ddof else 0.0
    )
    z = (sub["value"] - mean) / sd.where(sd > 0)
    sub["z"] = z.fillna(0.0).astype(float)
    sub = sub.reset_index(drop=True)
    rows = []
    base = sub.loc[sub["strategy"] == baseline, "z"].to_numpy()
    for name in strategies(sub, baseline=baseline):
        if name == baseline:
            continue
        x = sub.loc[sub["strategy"] == name, "z"].to_numpy()
        test = mwu(x, base)
        rows.append(
            {
                "strategy": name,
                "baseline": baseline,
                "n": len(x),
                "n_baseline": len(base),
                "mean_z": float(np.mean(x)) if len(x) else np.nan,
                "mean_z_baseline": float(np.mean(base)) if len(base) else np.nan,
                "U": test.statistic,
                "p": test.pvalue,
                "stars": stars(test.pvalue),
                "underpowered": not min_attainable_p(len(x), len(base)) <= ALPHA,
            }
        )
    columns = ["strategy", "baseline", "n", "n_baseline", "mean_z", "mean_z_baseline"]
    tests = pd.DataFrame(rows, columns=[*columns, "U", "p", "stars", "underpowered"])
    return PooledComparison(values=sub, tests=tests, sizes=sizes)


def shared_sizes(subsets: pd.DataFrame) -> set[int]:
    """Sizes at which every strategy trained on exactly the same images, in every init.

    That is the shared random starting subset (the paper's grey point) when the configured
    sizes include it. Only strategies present at that size are compared; a size held by
    a single strategy is not "shared".

    >>> import pandas as pd
    >>> sub = pd.DataFrame({"strategy": ["a", "a", "b", "b", "a", "b"], "init": 0,
    ...                     "size": [2, 2, 2, 2, 3, 3], "id": ["x", "y", "y", "x", "z", "w"]})
    >>> shared_sizes(sub)
    {2}
    """
    sub = subsets.loc[subsets["strategy"] != FULL]
    if "init" not in sub.columns:
        sub = sub.assign(init=0)
    out: set[int] = set()
    for size, at in sub.groupby("size"):
        names = set(at["strategy"])
        if len(names) < 2:
            continue
        same = True
        for _, per_init in at.groupby("init"):
            sets = {frozenset(g["id"].astype(str)) for _, g in per_init.groupby("strategy")}
            if len(sets) != 1 or len(set(per_init["strategy"])) != len(names):
                same = False
                break
        if same:
            out.add(int(size))  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- Table 2


def coverage(
    subsets: pd.DataFrame,
    manifest: pd.DataFrame,
    *,
    by_class: bool = True,
    average_inits: bool = True,
    train_ids: Iterable[object] | None = None,
    n_train: int | None = None,
) -> pd.DataFrame:
    """How much of the data each subset covers: images, patients and clips (Table 2).

    Parameters
    ----------
    subsets : DataFrame
        ``strategy, init, size, id``: the ids in each subset (``subsets.parquet``).
    manifest : DataFrame
        ``id`` and, where known, ``label``, ``patient_id``, ``clip_id``.
    by_class : bool
        Count per class (``label``) as well as over all classes (``class == "all"``).
        Ignored when the manifest has no usable ``label`` column.
    average_inits : bool
        Average the counts over initializations, like the paper's "Average training
        subsets"; otherwise one row per initialization.
    train_ids : iterable, optional
        The whole training set, added as ``strategy == "full"`` for comparison.
    n_train : int, optional
        Training-set size, for the ``fraction`` column (default: ``len(train_ids)``).

    Returns
    -------
    DataFrame
        Columns ``strategy, size, fraction, class, images, patients, clips`` (and ``init``
        when not averaged; ``n_inits`` and the range over initializations ``images_min,
        images_max, patients_min, ...`` when averaged: a mean count such as 306.5 is a mean,
        not a count). ``patients``/``clips`` are NaN when the manifest has no such ids.

    Raises
    ------
    EnrichError
        If the tables lack the needed columns, or subset ids are not in the manifest.
    """
    import pandas as pd

    for name, t, cols in (
        ("subsets", subsets, ("strategy", "size", "id")),
        ("manifest", manifest, ("id",)),
    ):
        missing = [c for c in cols if c not in t.columns]
        if missing:
            raise EnrichError(f"{name} table lacks column(s) {', '.join(missing)}")
    man = manifest.copy()
    man["id"] = man["id"].astype(str)
    if man["id"].duplicated().any():
        raise EnrichError(
            f"manifest has duplicate ids: {first_few(man.loc[man['id'].duplicated(), 'id'])}"
        )
    sub = subsets.copy()
    sub["id"] = sub["id"].astype(str)
    if "init" not in sub.columns:
        sub["init"] = 0
    if train_ids is not None:
        train = pd.DataFrame({"id": [str(i) for i in train_ids]})
        n_train = len(train) if n_train is None else n_train
        full_rows = [
            train.assign(strategy=FULL, init=i, size=len(train)) for i in sorted(set(sub["init"]))
        ]
        sub = pd.concat([sub, *full_rows], ignore_index=True)
    unknown = sorted(set(sub["id"]) - set(man["id"]))
    if unknown:
        raise EnrichError(f"subset ids not in the manifest: {first_few(unknown)}")
    have_label = by_class and "label" in man.columns and man["label"].notna().any()
    keep = ["id"] + [c for c in ("label", "patient_id", "clip_id") if c in man.columns]
    merged = sub.merge(man[keep], on="id", how="left")
    for c in ("patient_id", "clip_id"):
        if c not in merged.columns:
            merged[c] = np.nan
    parts = [merged.assign(**{"class": "all"})]
    if have_label:
        parts.append(merged.assign(**{"class": merged["label"].astype(str)}))
    long = pd.concat(parts, ignore_index=True)
    keys = ["strategy", "init", "size", "class"]
    counts = long.groupby(keys, sort=True).agg(
        images=("id", "nunique"),
        patients=("patient_id", lambda s: s.nunique() if s.notna().any() else np.nan),
        clips=("clip_id", lambda s: s.nunique() if s.notna().any() else np.nan),
    )
    counts = counts.reset_index()
    if average_inits:
        counts = (
            counts.groupby(["strategy", "size", "class"], sort=True)
            .agg(
                images=("images", "mean"),
                patients=("patients", "mean"),
                clips=("clips", "mean"),
                n_inits=("init", "nunique"),
                images_min=("images", "min"),
                images_max=("images", "max"),
                patients_min=("patients", "min"),
                patients_max=("patients", "max"),
                clips_min=("clips", "min"),
                clips_max=("clips", "max"),
            )
            .reset_index()
        )
    denom = n_train or int(sub["size"].max())
    counts.insert(2, "fraction", counts["size"] / denom if denom else np.nan)
    order = {name: i for i, name in enumerate([*strategies(counts), FULL])}
    counts["_o"] = counts["strategy"].map(order)
    counts["_c"] = counts["class"] != "all"
    counts = counts.sort_values(["_c", "class", "_o", "size"]).drop(columns=["_o", "_c"])
    return counts.reset_index(drop=True)


# --------------------------------------------------------------------------- Fig. 4


def labeling_time(
    table: pd.DataFrame,
    *,
    seconds_per_image: float,
    n_train: int | None = None,
    metric: str | None = None,
    alpha: float = ALPHA,
    rule: Rule = "sustained",
) -> pd.DataFrame:
    """Labeling hours for the whole training set vs the smallest full-equivalent subset.

    ``hours_saved = seconds_per_image × (n_train − size) / 3600`` where ``size`` is the
    strategy's smallest subset indistinguishable from the full set
    (:func:`smallest_equivalent` with `rule`). A strategy that never gets there saves
    nothing.

    Parameters
    ----------
    table : DataFrame
        Checked results.
    seconds_per_image : float
        Human labeling time per image: the paper used 3 s (classification) and 300 s
        (segmentation).
    n_train : int, optional
        Training-set size; by default the size of the ``full`` rows.

    Returns
    -------
    DataFrame
        One row per strategy: ``strategy, n_train, size, reached, cannot_tell, hours_full,
        hours_needed, hours_saved, fraction_saved``. A strategy whose comparisons had too
        few models (``cannot_tell``) saves nothing: no claim is supported.

    Examples
    --------
    3 s per image, 45,460 images, 25,000 needed: (45,460 − 25,000) × 3 s ≈ 17.05 h saved.
    """
    import pandas as pd

    if not (np.isfinite(seconds_per_image) and seconds_per_image > 0):
        raise EnrichError(f"seconds_per_image={seconds_per_image}; expected a positive number")
    n = _n_train(table, n_train)
    if n is None:
        raise EnrichError(
            "cannot tell the training-set size: no full-set models in the results and no n_train"
        )
    eq = smallest_equivalent(table, metric=metric, alpha=alpha, rule=rule, n_train=n)
    rows = []
    for r in records(eq):
        size = float(r["size"]) if r["reached"] else float(n)
        rows.append(
            {
                "strategy": r["strategy"],
                "n_train": n,
                "size": size,
                "reached": bool(r["reached"]),
                "cannot_tell": bool(r["cannot_tell"]),
                "hours_full": n * seconds_per_image / 3600.0,
                "hours_needed": size * seconds_per_image / 3600.0,
                "hours_saved": (n - size) * seconds_per_image / 3600.0,
                "fraction_saved": (n - size) / n if n else np.nan,
            }
        )
    columns = ["strategy", "n_train", "size", "reached", "cannot_tell", "hours_full"]
    columns += ["hours_needed"]
    return pd.DataFrame(rows, columns=[*columns, "hours_saved", "fraction_saved"])
