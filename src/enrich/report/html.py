"""The HTML report of a benchmark run: one self-contained file a clinician can open from disk.

:func:`write_report` reads a run folder written by ``enrich benchmark``::

    runs/NAME/results.csv       one row per trained model (required)
    runs/NAME/meta.json         config, seeds, versions, fingerprint, task, n_train (optional)
    runs/NAME/subsets.parquet   strategy, init, size, id[, rank] (optional: coverage, grids)
    runs/NAME/split.parquet     id, split, label, patient_id, clip_id (optional: coverage)

and, through ``meta.json``'s ``workspace`` (or the folder two levels up), the workspace's
manifest and embeddings (optional: coverage, redundancy CDF, image grids). It computes the
statistics (:mod:`enrich.evaluate.stats`), draws the figures (:mod:`enrich.report.plots`,
:mod:`enrich.report.grid`), embeds them as base64 PNG in the Jinja2 template
``report/templates/report.html`` and writes ``report.html`` atomically. The page needs no
network: no external CSS, scripts or fonts.

Parts that need optional inputs (the workspace, images, embeddings) are left out with a
note saying why when those inputs are missing or unreadable; the statistics never are.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich._atomic import write_text
from enrich.errors import EnrichError
from enrich.evaluate import stats as S
from enrich.evaluate.results import DuplicateResultsWarning

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["RunData", "build_context", "load_run", "render", "write_report"]

_TEMPLATE = "report.html"
# Fewer models than this per point get a caution about statistical power (the paper used 30).
_FEW_MODELS = 10
# Above this many images the O(N²) redundancy pass is left to `enrich redundancy`.
_MAX_REDUNDANCY_IMAGES = 200_000
# Subsets larger than this get no diversity row (n² similarities per subset).
_MAX_DIVERSITY_IMAGES = 20_000
_STRATEGY_LABELS = {"enrich": "ENRICH", "random": "Random", S.FULL: "Full training set"}
_METRIC_NAMES = {"auc": "AUC", "jaccard": "mean Jaccard"}
# Errors that make an optional section unavailable (reported in the page), not fatal.
_OPTIONAL_ERRORS = (EnrichError, OSError, ImportError, KeyError, ValueError, IndexError)


def _label(name: str) -> str:
    return _STRATEGY_LABELS.get(name, name)


@dataclass
class RunData:
    """What a report is made of: the run's tables and, when found, its workspace."""

    run_dir: Path
    results: pd.DataFrame
    meta: dict[str, Any]
    subsets: pd.DataFrame | None = None
    workspace: Path | None = None
    split: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def load_run(run_dir: str | os.PathLike[str]) -> RunData:
    """Read a benchmark run folder.

    Parameters
    ----------
    run_dir : path-like
        ``runs/NAME``: must hold ``results.csv``; ``meta.json`` and ``subsets.parquet`` are
        used when present.

    Raises
    ------
    EnrichError
        If the folder is missing, is not a run, or its results table is empty or invalid.
    """
    import pandas as pd

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EnrichError(
            f"{run_dir}: no such run folder; expected runs/NAME from `enrich benchmark`"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DuplicateResultsWarning)
        results = S.read_results(run_dir)
    notes: list[str] = [str(w.message) for w in caught if w.category is DuplicateResultsWarning]
    for w in caught:
        if w.category is not DuplicateResultsWarning:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    meta: dict[str, Any] = {}
    meta_path = run_dir / "meta.json"
    if meta_path.is_file():
        try:
            loaded = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EnrichError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise EnrichError(f"{meta_path}: expected a JSON object")
        meta = loaded
    else:
        notes.append("meta.json is missing: no provenance, task or labeling-time settings.")
    tables: dict[str, pd.DataFrame | None] = {}
    for name in ("subsets", "split"):
        path = run_dir / f"{name}.parquet"
        tables[name] = None
        if path.is_file():
            try:
                tables[name] = pd.read_parquet(path)
            except (OSError, ValueError, ImportError) as exc:
                notes.append(f"{path.name} could not be read ({exc}).")
    return RunData(
        run_dir,
        results,
        meta,
        subsets=tables["subsets"],
        workspace=_find_workspace(run_dir, meta),
        split=tables["split"],
        notes=notes,
    )


def _find_workspace(run_dir: Path, meta: dict[str, Any]) -> Path | None:
    candidates: list[Path] = []
    ws = meta.get("workspace")
    if isinstance(ws, str) and ws:
        p = Path(ws)
        candidates += [p] if p.is_absolute() else [Path.cwd() / p, run_dir / p]
    candidates.append(run_dir.parent.parent)  # WS/runs/NAME
    for c in candidates:
        if (c / "manifest.parquet").is_file():
            return c.resolve()
    return None


# --------------------------------------------------------------------------- context


def _png(fig: Figure) -> str:
    from enrich.report.plots import figure_png

    data = figure_png(fig)
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)  # figures made by pyplot-based helpers must not pile up
    except ImportError:  # pragma: no cover - matplotlib always has pyplot
        pass
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _pct(fraction: float) -> str:
    if not np.isfinite(fraction):
        return "–"
    pct = 100.0 * fraction
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}%"


def _num(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def _p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _hours(h: float) -> str:
    """Human wording of a duration given in hours.

    >>> _hours(38.2), _hours(2.25), _hours(0.02), _hours(0.5), _hours(1 / 3600)
    ('38 hours', '2.2 hours', '1.2 minutes', '30 minutes', '1 second')
    """
    if h >= 10:
        return f"{h:,.0f} hours"
    if h >= 1:
        return f"{h:.1f} hours"
    minutes = h * 60
    if minutes >= 10:
        return f"{minutes:.0f} minutes"
    if minutes >= 1:
        return f"{minutes:.1f} minutes"
    seconds = round(h * 3600)
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _count(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:,.0f}" if abs(x - round(x)) < 0.05 else f"{x:,.1f}"


def _mean_count(mean: float, lo: float, hi: float) -> str:
    """A count averaged over initializations: exact when they agree, else mean (min–max).

    >>> _mean_count(306.5, 300, 313), _mean_count(12.0, 12, 12), _mean_count(float("nan"), 1, 2)
    ('306.5 (300–313)', '12', '–')
    """
    if mean is None or not np.isfinite(mean):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
        return _count(mean)
    return f"{mean:,.1f} ({lo:,.0f}–{hi:,.0f})"


def _metric_digits(desc: pd.DataFrame) -> int:
    """Enough digits to tell means apart (AUCs of 0.99x need 4)."""
    sd = desc["std"].dropna()
    sd = sd[sd > 0]
    if sd.empty:
        return 3
    return int(min(5, max(3, 1 - math.floor(math.log10(float(sd.median()))))))


def build_context(
    run: RunData,
    *,
    metric: str | None = None,
    baseline: str = "random",
    alpha: float = S.ALPHA,
    rule: S.Rule = "sustained",
    images: bool = True,
) -> dict[str, Any]:
    """Compute everything the template shows (statistics, figures, tables, provenance)."""
    from enrich.report import plots

    results, meta = run.results, run.meta
    notes = list(run.notes)
    if metric is None and meta.get("metric") in set(results["metric"]):
        metric = str(meta["metric"])
    metric = S.choose_metric(results, metric)
    ok = S.ok_results(results, metric=metric)
    if ok.empty:
        raise EnrichError(
            f"{run.run_dir / 'results.csv'}: no successful models for metric {metric!r} "
            f"({int((results['status'] != 'ok').sum())} failed); nothing to report"
        )
    metric_name = _METRIC_NAMES.get(metric, metric)
    task = str(meta.get("task") or ("segmentation" if metric == "jaccard" else "classification"))
    seconds = meta.get("seconds_per_image") or (meta.get("config") or {}).get("seconds_per_image")
    seconds = float(seconds) if seconds else (300.0 if task == "segmentation" else 3.0)
    n_train = meta.get("n_train")
    n_train = int(n_train) if n_train else S._n_train(results, None)
    if n_train is None and len(ok):
        notes.append(
            "No full-set models and no n_train in meta.json: "
            "fractions are relative to the largest subset."
        )
    names = S.strategies(ok, baseline=baseline)
    has_baseline = baseline in names and len(names) > 1
    has_full = bool((ok["strategy"] == S.FULL).any())

    desc = S.describe(results, metric=metric)
    digits = _metric_digits(desc)
    vs_base = (
        S.compare_to_baseline(results, baseline=baseline, metric=metric) if has_baseline else None
    )
    vs_full = S.compare_to_full(results, metric=metric, alpha=alpha)
    eq = S.smallest_equivalent(results, metric=metric, alpha=alpha, rule=rule, n_train=n_train)
    # Sizes where every strategy trained on the same images (the shared starting set).
    shared = S.shared_sizes(run.subsets) if run.subsets is not None else set()
    pooled = (
        S.pooled_comparison(results, baseline=baseline, metric=metric, exclude_sizes=shared)
        if has_baseline
        else None
    )
    times = (
        S.labeling_time(
            results,
            seconds_per_image=seconds,
            n_train=n_train,
            metric=metric,
            alpha=alpha,
            rule=rule,
        )
        if has_full and n_train
        else None
    )
    fails = S.failures(results)
    need = S.models_needed(alpha)  # per group, for a test that can reach alpha at all
    n_min = int(min(vs_full["n"].min(), vs_full["n_full"].min())) if len(vs_full) else 0
    weak = 0 < n_min < _FEW_MODELS  # testable, but only large differences show

    # ---- headline
    headline = []
    for r in S.records(eq):
        mine = vs_full.loc[(vs_full["strategy"] == r["strategy"]) & vs_full["underpowered"]]
        size = round(float(r["size"])) if np.isfinite(r["size"]) else None
        t = times.loc[times["strategy"] == r["strategy"]].iloc[0] if times is not None else None
        item = {
            "strategy": _label(r["strategy"]),
            "key": r["strategy"],
            "reached": bool(r["reached"]),
            "percent": _pct(r["fraction"]) if r["reached"] else "100%",
            "images": f"{size:,}" if size is not None else "–",
            "n_train": f"{n_train:,}" if n_train else "–",
            "hours_saved": _hours(float(t["hours_saved"])) if t is not None else None,
            "underpowered": bool(r["underpowered"]),
            "cannot_tell": bool(r["cannot_tell"]),
            "n_point": int(mine["n"].min()) if len(mine) else None,
            "n_full": int(mine["n_full"].iloc[0]) if len(mine) else None,
            "min_p": _p(S.min_attainable_p(int(mine["n"].min()), int(mine["n_full"].iloc[0])))
            if len(mine)
            else None,
            "better": r["direction"] == "better",
            "mean": _mean_at(desc, r["strategy"], r["size"], digits) if r["reached"] else None,
            # A smaller size with no detectable difference that larger sizes did not hold.
            "first_differs": bool(
                np.isfinite(r["first_size"]) and (not r["reached"] or r["first_size"] < r["size"])
            ),
            "first_percent": _pct(r["first_fraction"]),
        }
        headline.append(item)
    pooled_line = None
    if pooled is not None and len(pooled.tests):
        tr = pooled.tests.iloc[0]
        higher = (
            _label(str(tr["strategy"]))
            if tr["mean_z"] > tr["mean_z_baseline"]
            else _label(baseline)
        )
        pooled_line = {
            "strategy": _label(str(tr["strategy"])),
            "baseline": _label(baseline),
            "p": _p(float(tr["p"])),
            "stars": tr["stars"],
            "significant": bool(np.isfinite(tr["p"]) and tr["p"] <= alpha),
            # 1 model vs 1 (say): no p-value this test gives could mean anything.
            "underpowered": bool(tr["underpowered"]),
            "n": int(tr["n"]),
            "n_baseline": int(tr["n_baseline"]),
            "min_p": _p(S.min_attainable_p(int(tr["n"]), int(tr["n_baseline"]))),
            "higher": higher,
            "n_sizes": len(pooled.sizes),
        }
    full_desc = desc.loc[desc["strategy"] == S.FULL]
    full_line = None
    if not full_desc.empty:
        fr = full_desc.iloc[0]
        full_line = {
            "mean": _num(fr["mean"], digits),
            "std": _num(fr["std"], digits),
            "n": int(fr["n"]),
        }
    else:
        notes.append(
            "No successful full-set models: the comparison with the full training set "
            "(red circles, smallest sufficient subset, hours saved) is not available."
        )

    # ---- power caveat
    power_note = None
    if len(vs_full):
        if bool(vs_full["underpowered"].any()):
            small = vs_full.loc[vs_full["underpowered"]].iloc[0]
            n_under = int(vs_full["underpowered"].sum())
            where = (
                "every size"
                if n_under == len(vs_full)
                else f"{n_under} of {len(vs_full)} strategy × size points"
            )
            power_note = (
                f"With {int(small['n'])} models per point and {int(small['n_full'])} full-set "
                f"models, the Mann-Whitney test cannot give p ≤ {alpha:g} (the smallest "
                f"possible p is {S.min_attainable_p(int(small['n']), int(small['n_full'])):.2g})"
                f", so at {where} this run cannot tell whether the subset matches the full "
                "set. Those points are marked “cannot tell” and count neither as a match nor "
                f"towards labeling time saved. A test that can reach p ≤ {alpha:g} needs at "
                f"least {need} models per point and {need} full-set models (the paper used 30)."
            )
        elif n_min < _FEW_MODELS:
            power_note = (
                f"Some points rest on only {n_min} models. With so few, the tests detect only "
                "large differences: “indistinguishable from the full set” may just mean "
                "“too few models to tell”. Compare the mean scores, and train more "
                "models per size (the paper used 30) before trusting the headline."
            )

    # ---- per-size table
    size_rows = []
    order = {n: i for i, n in enumerate([*names, S.FULL])}
    desc = (
        desc.assign(_o=desc["strategy"].map(order)).sort_values(["_o", "size"]).drop(columns="_o")
    )
    for r in S.records(desc):
        row: dict[str, Any] = {
            "strategy": _label(r["strategy"]),
            "key": r["strategy"],
            "size": f"{int(r['size']):,}",
            "percent": _pct(r["fraction"]),
            "n": int(r["n"]),
            "mean_sd": f"{_num(r['mean'], digits)} ± {_num(r['std'], digits)}",
            "p_base": "",
            "stars_base": "",
            "p_full": "",
            "same": None,
            "direction": "",
            "n_full": None,
        }
        if vs_base is not None:
            b = vs_base.loc[(vs_base["strategy"] == r["strategy"]) & (vs_base["size"] == r["size"])]
            if len(b):
                row["p_base"] = _p(float(b["p"].iloc[0]))
                row["stars_base"] = str(b["stars"].iloc[0])
        f = vs_full.loc[(vs_full["strategy"] == r["strategy"]) & (vs_full["size"] == r["size"])]
        if len(f):
            row["p_full"] = _p(float(f["p"].iloc[0]))
            row["same"] = bool(f["indistinguishable"].iloc[0])
            row["direction"] = str(f["direction"].iloc[0])
            row["n_full"] = int(f["n_full"].iloc[0])
        size_rows.append(row)

    # ---- figures
    figures: dict[str, str | None] = dict.fromkeys(("performance", "pooled", "time", "redundancy"))
    try:
        figures["performance"] = _png(
            plots.plot_performance(
                results, metric=metric, baseline=baseline, alpha=alpha, shared_sizes=shared
            )
        )
    except _OPTIONAL_ERRORS as exc:
        notes.append(f"Figure 3 could not be drawn: {exc}")
    if pooled is not None and len(pooled.sizes):
        try:
            figures["pooled"] = _png(
                plots.plot_pooled(results, metric=metric, baseline=baseline, shared_sizes=shared)
            )
        except _OPTIONAL_ERRORS as exc:
            notes.append(f"Figure 5 could not be drawn: {exc}")
    # Hours saved are shown only where a strategy's claim is supported by a test that could
    # have detected a difference (``reached``); otherwise there is nothing to save yet.
    if times is not None and bool(times["reached"].any()):
        figures["time"] = _png(
            plots.plot_labeling_time(
                results,
                seconds_per_image=seconds,
                n_train=n_train,
                metric=metric,
                alpha=alpha,
                rule=rule,
            )
        )

    # ---- which strategy to label with (Holm-corrected over the strategies tried)
    # Shown when several strategies were compared; with one (ENRICH vs random) the pooled
    # card above already says the same.
    verdict = None
    if has_baseline and len([n for n in names if n not in (baseline, S.FULL)]) >= 2:
        try:
            verdict = _verdict(
                results, metric=metric, baseline=baseline, alpha=alpha, shared=shared
            )
        except _OPTIONAL_ERRORS as exc:
            notes.append(f"The verdict (which strategy to label with) could not be computed: {exc}")

    # ---- parts that need the subsets, the split or the workspace
    manifest = None
    coverage_tables: list[dict[str, Any]] = []
    redundancy_summary = None
    grids: dict[str, str | None] = dict.fromkeys(("picks", "duplicates"))
    red: Any = None
    red_emb: Any = None
    ws = None
    if run.workspace is None:
        notes.append(
            "The workspace (manifest, embeddings) was not found: redundancy and image grids "
            "are left out."
        )
    else:
        from enrich.workspace import Workspace

        ws = Workspace(run.workspace)
        try:
            manifest = ws.manifest()
        except _OPTIONAL_ERRORS as exc:
            notes.append(f"The manifest could not be read: {exc}")
    # split.parquet is the benchmark's own view (id, split, label, patient_id, clip_id).
    cov_source = run.split if run.split is not None else manifest
    if cov_source is not None and run.subsets is not None:
        try:
            coverage_tables = _coverage_tables(run, cov_source, task=task, n_train=n_train)
        except _OPTIONAL_ERRORS as exc:
            notes.append(f"Coverage (Table 2) could not be computed: {exc}")
    if ws is not None and ws.has_embeddings():
        try:
            red, red_emb, redundancy_summary, fig1 = _redundancy(ws, meta)
            figures["redundancy"] = fig1
        except _OPTIONAL_ERRORS as exc:
            notes.append(f"Redundancy (Figure 1) could not be computed: {exc}")
    diversity = None
    if ws is not None and ws.has_embeddings() and run.subsets is not None and coverage_tables:
        try:
            diversity = _diversity(run, ws, coverage_tables[-1], ok)
        except _OPTIONAL_ERRORS as exc:
            notes.append(f"Subset diversity could not be computed: {exc}")
    info = _image_info(run, manifest)
    leakage = None
    if red is not None and red_emb is not None and info is not None:
        try:
            leakage = _leakage(red, red_emb, info)
        except _OPTIONAL_ERRORS as exc:
            notes.append(f"Near-duplicates across the split could not be checked: {exc}")
    grid_ids: dict[str, list[dict[str, str]]] = {}
    if images and manifest is not None:
        made, grid_ids, grid_notes = _grids(run, manifest, info, red, red_emb)
        grids.update(made)
        notes.extend(grid_notes)
    if run.subsets is None:
        notes.append("subsets.parquet is missing: coverage and the picks grid are left out.")

    incomplete = _incomplete(run, n_train)
    next_step = _next_step(headline, has_full=full_line is not None, weak=weak, need=need)

    failed_rows = [
        {
            "strategy": _label(r["strategy"]),
            "size": f"{int(r['size']):,}",
            "error": r["error"] or "(no message)",
            "n": int(r["n_failed"]),
        }
        for r in S.records(fails)
    ]
    return {
        "title": f"ENRICH benchmark report: {meta.get('name') or run.run_dir.name}",
        "run_name": meta.get("name") or run.run_dir.name,
        "dataset": meta.get("dataset") or (run.workspace.name if run.workspace else None),
        "task": task,
        "metric": metric,
        "metric_name": metric_name,
        "alpha": alpha,
        "rule": rule,
        "baseline": _label(baseline),
        "seconds_per_image": f"{seconds:g}",
        "n_train": f"{n_train:,}" if n_train else "–",
        "n_test": f"{int(meta['n_test']):,}" if meta.get("n_test") else "–",
        "n_models": len(results),
        "n_ok": int((results["status"] == "ok").sum()),
        "n_failed": int((results["status"] != "ok").sum()),
        "n_inits": int(ok.loc[ok["strategy"] != S.FULL, "init"].nunique()),
        "models_per_point": _models_per_point(ok),
        "headline": headline,
        "incomplete": incomplete,
        "next_step": next_step,
        "models_needed": need,
        "pooled": pooled_line,
        "verdict": verdict,
        "full": full_line,
        "power_note": power_note,
        "size_rows": size_rows,
        "has_baseline": has_baseline,
        "has_shared": bool(shared),
        "workspace_arg": str(run.workspace) if run.workspace else "WS",
        "compared": [_label(n) for n in names if n != baseline],
        "figures": figures,
        "grids": grids,
        "grid_ids": grid_ids,
        "leakage": leakage,
        "coverage": coverage_tables,
        "diversity": diversity,
        "coverage_ids": any(r["what"] != "images" for t in coverage_tables for r in t["rows"]),
        "redundancy": redundancy_summary,
        "failed": failed_rows,
        "notes": notes,
        "run_warnings": [str(w) for w in meta.get("warnings") or []],
        "provenance": _provenance(run),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _verdict(
    results: pd.DataFrame, *, metric: str, baseline: str, alpha: float, shared: set[int]
) -> dict[str, Any] | None:
    """The "which strategy to label with" section: :mod:`enrich.evaluate.verdict` worded for
    the page (the headline card, the pooled tests, the per-size comparisons with Holm's
    correction and the label-efficiency figure and table)."""
    from enrich.evaluate import verdict as V

    v = V.recommend(results, baseline=baseline, metric=metric, alpha=alpha, exclude_sizes=shared)
    if v.status == "nothing" or not v.pooled:
        return None
    per_size = V.compare_strategies(results, baseline=baseline, metric=metric, exclude_sizes=shared)
    eff = V.label_efficiency(results, baseline=baseline, metric=metric, exclude_sizes=shared)
    m = len(v.pooled)
    pooled_rows = []
    for r in v.pooled:
        if v.status == "cannot_tell":
            word = "cannot tell"
        elif r["p_holm"] < alpha:
            word = "above" if r["mean_z"] > r["mean_z_baseline"] else "below"
            word += f" {_label(baseline).lower()}"
        else:
            word = "no detectable difference"
        pooled_rows.append(
            {
                "strategy": _label(r["strategy"]),
                "key": r["strategy"],
                "mean_z": f"{r['mean_z']:+.2f}",
                "mean_z_baseline": f"{r['mean_z_baseline']:+.2f}",
                "p": _p(r["p"]),
                "p_holm": _p(r["p_holm"]),
                "verdict": word,
                "picked": r["strategy"] == v.strategy,
            }
        )

    def labels_text(r: dict[str, Any]) -> str:
        if not np.isfinite(r["labels"]):
            return f"more than measured (> {_count(float(eff['size'].max()))})"
        bound = "≤ " if r["status"] != "reached" else ""
        lo, hi = r["ci_low"], r["ci_high"]
        ci_hi = _count(hi) if np.isfinite(hi) else "more than measured"
        return f"{bound}{_count(r['labels'])} (95% CI {_count(lo)}–{ci_hi})"

    eff_rows = [
        {
            "strategy": _label(r["strategy"]),
            "key": r["strategy"],
            "size": _count(float(r["size"])),
            "labels": labels_text(r),
            "ratio": _pct(float(r["ratio"])) if np.isfinite(r["ratio"]) else "–",
        }
        for r in S.records(eff)
    ]
    evidence = None
    if v.strategy is not None:
        pick = next(r for r in v.pooled if r["strategy"] == v.strategy)
        mine = eff.loc[eff["strategy"] == v.strategy].sort_values("size")
        at = S.records(mine.tail(1))[0] if len(mine) else None
        evidence = {
            "mean_z": f"{pick['mean_z']:+.2f}",
            "mean_z_baseline": f"{pick['mean_z_baseline']:+.2f}",
            "p": _p(pick["p"]),
            "p_holm": _p(pick["p_holm"]),
            "size": _count(float(at["size"])) if at else None,
            "labels": labels_text(at) if at else None,
            "ratio": _pct(float(at["ratio"])) if at and np.isfinite(at["ratio"]) else None,
        }
    comparisons = []
    for r in S.records(per_size.loc[per_size["comparison"] == "baseline"]):
        other = per_size.loc[
            (per_size["comparison"] == "best other")
            & (per_size["strategy"] == r["strategy"])
            & (per_size["size"] == r["size"])
        ]
        o = S.records(other)[0] if len(other) else None
        comparisons.append(
            {
                "strategy": _label(r["strategy"]),
                "key": r["strategy"],
                "size": _count(float(r["size"])),
                "n": int(r["n"]),
                "mean": _num(r["mean"], 4),
                "mean_vs": _num(r["mean_vs"], 4),
                "p": _p(r["p"]),
                "p_holm": _p(r["p_holm"]),
                "stars": r["stars"],
                "best": _label(o["vs"]) if o else "–",
                "best_mean": _num(o["mean_vs"], 4) if o else "–",
                "best_p_holm": _p(o["p_holm"]) if o else "–",
                "best_stars": o["stars"] if o else "",
            }
        )
    figure = None
    if len(eff):
        figure = _png(V.plot_label_efficiency(eff))
    return {
        "status": v.status,
        "strategy": _label(v.strategy) if v.strategy else None,
        "key": v.strategy,
        "headline": v.headline,
        "need": v.models_needed,
        "n_strategies": m,
        "evidence": evidence,
        "pooled_rows": pooled_rows,
        "comparisons": comparisons,
        "n_comparisons": len(per_size.loc[per_size["comparison"] == "baseline"]),
        "n_best": len(per_size.loc[per_size["comparison"] == "best other"]),
        "efficiency": eff_rows,
        "figure": figure,
    }


def _incomplete(run: RunData, n_train: int | None) -> dict[str, Any] | None:
    """How many of the models the run's configuration planned are not in results.csv."""
    from enrich.evaluate.protocol import plan_sizes

    meta = run.meta
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    assert isinstance(cfg, dict)
    try:
        models = int(cfg["models"])
        inits = int(cfg["initializations"])
    except (KeyError, TypeError, ValueError):
        return None  # no configuration recorded: nothing to compare with
    sizes = meta.get("sizes")
    if not isinstance(sizes, list):
        if not n_train or not isinstance(cfg.get("sizes"), list):
            return None
        try:
            _, sizes, _ = plan_sizes(tuple(cfg["sizes"]), cfg.get("initial", 0.02), n_train)
        except (EnrichError, TypeError, ValueError):
            return None
    names = meta.get("strategies") or cfg.get("strategies")
    if not isinstance(names, list):
        names = sorted(set(run.results["strategy"]) - {S.FULL})
    miss = S.missing_models(
        run.results,
        strategies=[str(n) for n in names],
        sizes=[int(k) for k in sizes],
        initializations=inits,
        models=models,
        full=bool(cfg.get("full", True)),
    )
    if miss.empty:
        return None
    planned = models * inits * (len(names) * len(sizes) + int(bool(cfg.get("full", True))))
    per = miss.groupby("strategy", sort=False)["missing"].sum()
    order = [*S.strategies(miss), S.FULL]
    return {
        "missing": int(miss["missing"].sum()),
        "planned": planned,
        "per_strategy": [
            {"strategy": _label(n), "missing": int(per[n])} for n in order if n in per.index
        ],
        "sizes": int(miss.loc[miss["strategy"] != S.FULL, "size"].nunique()),
    }


def _next_step(
    headline: list[dict[str, Any]], *, has_full: bool, weak: bool, need: int
) -> dict[str, Any] | None:
    """The "Next step" line, worded to agree with the headline card and the caution box."""
    h = next((h for h in headline if h["key"] == "enrich"), None)
    if h is None or not has_full:
        return None
    if h["reached"]:
        return {"kind": "weak" if weak else "matched", "percent": h["percent"]}
    if h["cannot_tell"]:
        return {"kind": "cannot_tell", "need": need}
    return None


def _mean_at(desc: pd.DataFrame, strategy: str, size: float, digits: int) -> str | None:
    at = desc.loc[(desc["strategy"] == strategy) & (desc["size"] == size), "mean"]
    return _num(float(at.iloc[0]), digits) if len(at) else None


def _models_per_point(ok: pd.DataFrame) -> str:
    counts = ok.loc[ok["strategy"] != S.FULL].groupby(["strategy", "size"]).size()
    if counts.empty:
        return "–"
    lo, hi = int(counts.min()), int(counts.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _train_ids(run: RunData, manifest: pd.DataFrame, n_train: int | None) -> list[str] | None:
    """The training pool, for the "full" column of the coverage table."""
    subsets = run.subsets
    if subsets is not None and (subsets["strategy"] == S.FULL).any():
        return subsets.loc[subsets["strategy"] == S.FULL, "id"].astype(str).unique().tolist()
    for table in (run.split, manifest):
        if table is not None and "split" in table.columns:
            train = table.loc[table["split"].astype(str) == "train", "id"].astype(str).tolist()
            if train and (n_train is None or len(train) == n_train):
                return train
    return None


def _coverage_tables(
    run: RunData, manifest: pd.DataFrame, *, task: str, n_train: int | None
) -> list[dict[str, Any]]:
    assert run.subsets is not None
    subsets = run.subsets.loc[run.subsets["strategy"] != S.FULL]
    labels = manifest["label"] if "label" in manifest.columns else None
    by_class = bool(
        task == "classification"
        and labels is not None
        and labels.notna().any()
        and labels.nunique() <= 20
    )
    cov = S.coverage(
        subsets,
        manifest,
        by_class=by_class,
        train_ids=_train_ids(run, manifest, n_train),
        n_train=n_train,
    )
    tables = []
    classes = [c for c in dict.fromkeys(cov["class"]) if c != "all"] + ["all"]
    subset_rows = cov.loc[cov["strategy"] != S.FULL]
    sizes = sorted(set(subset_rows["size"]))
    header = []
    for s in sizes:
        frac = subset_rows.loc[subset_rows["size"] == s, "fraction"].iloc[0]
        header.append({"size": f"{int(s):,}", "percent": _pct(frac)})
    full_all = cov.loc[(cov["strategy"] == S.FULL) & (cov["class"] == "all")]
    full_header = (
        {"size": f"{int(full_all['size'].iloc[0]):,}", "percent": "100% (all)"}
        if len(full_all)
        else None
    )
    for cls in classes:
        c = cov.loc[cov["class"] == cls]
        full = c.loc[c["strategy"] == S.FULL]
        rows = []
        for name in dict.fromkeys(c.loc[c["strategy"] != S.FULL, "strategy"]):
            cs = c.loc[c["strategy"] == name].set_index("size")
            for what in ("images", "patients", "clips"):
                if cs[what].isna().all():
                    continue
                cells = [
                    _mean_count(
                        cs[what].get(s, np.nan),
                        cs[f"{what}_min"].get(s, np.nan),
                        cs[f"{what}_max"].get(s, np.nan),
                    )
                    for s in sizes
                ]
                varies = any(" (" in c for c in cells)
                rows.append(
                    {
                        "strategy": _label(name),
                        "key": name,
                        "what": f"{what}, mean (range)" if varies else what,
                        "cells": cells,
                        "full": _count(float(full[what].iloc[0])) if len(full) else None,
                    }
                )
        title = "All classes" if cls == "all" else f"Class {cls}"
        tables.append({"title": title, "header": header, "full": full_header, "rows": rows})
    return tables


def _diversity(
    run: RunData, ws: Any, table: dict[str, Any], ok: pd.DataFrame, *, q: float = 1.0
) -> dict[str, str | None] | None:
    """Add each strategy's Leinster-Cobbold diversity (order `q`, mean over the starting
    sets) to the "All classes" coverage table, and say whether more diverse predicted
    better: at each size, the rank correlation across strategies between diversity and mean
    metric."""
    from scipy.stats import spearmanr

    from enrich.evaluate.diversity import subset_diversity

    assert run.subsets is not None
    subsets = run.subsets.loc[run.subsets["strategy"] != S.FULL]
    if subsets.empty:
        return None
    if int(subsets.groupby(["strategy", "init", "size"]).size().max()) > _MAX_DIVERSITY_IMAGES:
        raise EnrichError(
            f"subsets of more than {_MAX_DIVERSITY_IMAGES:,} images are more than the report "
            "computes inline"
        )
    values: dict[tuple[str, int], list[float]] = {}
    div = subset_diversity(subsets, ws.embeddings(), q=q)
    for name, size, value in zip(
        div["strategy"].tolist(), div["size"].tolist(), div["diversity"].tolist(), strict=True
    ):
        values.setdefault((str(name), int(size)), []).append(float(value))
    sizes = [int(h["size"].replace(",", "")) for h in table["header"]]
    order = list(dict.fromkeys(r["key"] for r in table["rows"]))
    for name in order:
        cells = []
        for n in sizes:
            v = values.get((name, n))
            if not v:
                cells.append("–")
            elif max(v) - min(v) < 0.05:
                cells.append(f"{np.mean(v):,.1f}")
            else:  # mean (min–max) over the starting sets, one decimal throughout
                cells.append(f"{np.mean(v):,.1f} ({min(v):,.1f}–{max(v):,.1f})")
        table["rows"].append(
            {
                "strategy": _label(name),
                "key": name,
                "what": f"diversity (q={q:g}), effective images",
                "cells": cells,
                "full": None,
            }
        )
    means = ok.groupby(["strategy", "size"])["value"].mean()
    parts = []
    shared = S.shared_sizes(run.subsets)
    for n in sizes:
        here = [s for s in order if (s, n) in values and (s, n) in means.index]
        if n in shared or len(here) < 3:
            continue
        rho = spearmanr([np.mean(values[(s, n)]) for s in here], [means[(s, n)] for s in here])[0]
        if np.isfinite(rho):
            parts.append(f"{n:,} images: ρ = {rho:+.2f}")
    if not parts:
        return {"note": None}
    return {
        "note": "Did the more diverse subsets train better models? Rank correlation "
        "(Spearman) across strategies between a subset's diversity and its models' mean "
        "score, at each size: "
        + "; ".join(parts)
        + ". Near +1: more diverse predicted better here; near 0 or negative: it did not."
    }


def _redundancy(ws: Any, meta: dict[str, Any]) -> tuple[Any, Any, dict[str, Any], str]:
    from matplotlib.figure import Figure

    from enrich.redundancy import redundancy
    from enrich.report.plots import PHONE_WIDTH_IN, plot_redundancy_cdf, readable

    emb = ws.embeddings()
    if len(emb) > _MAX_REDUNDANCY_IMAGES:
        raise EnrichError(
            f"{len(emb):,} images is more than the report computes inline; run `enrich redundancy`"
        )
    if len(emb) < 2:
        raise EnrichError("fewer than two embedded images")
    res = redundancy(emb.vectors)
    name = meta.get("dataset") or ws.path.name
    fig = Figure(figsize=(PHONE_WIDTH_IN, 3.6))
    plot_redundancy_cdf({str(name): res.max_similarity}, ax=fig.add_subplot())
    readable(fig).tight_layout()  # again: the text grew
    summary = res.summary()
    m = np.asarray(res.max_similarity, dtype=float)
    info = {
        "n_images": f"{len(m):,}",
        "median": f"{float(np.median(m)):.3f}",
        "above_09": _pct(float((m > 0.9).mean())),
        "above_08": _pct(float((m > 0.8).mean())),
        "below_04": _pct(float((m < 0.4).mean())),
        "n_groups": summary.get("near_duplicates", {}).get("n_groups"),
        "in_groups": summary.get("near_duplicates", {}).get("n_images_in_groups"),
        "group_threshold": summary.get("near_duplicates", {}).get("threshold"),
        "group_method": summary.get("near_duplicates", {}).get("method"),
    }
    return res, emb, info, _png(fig)


def _image_info(run: RunData, manifest: pd.DataFrame | None) -> pd.DataFrame | None:
    """id, split, patient_id, label of every known image: the benchmark's split.parquet
    first (its split is the one the models used), the workspace manifest for the rest."""
    import pandas as pd

    cols = ["id", "split", "patient_id", "label"]
    parts = []
    for table in (run.split, manifest):
        if table is not None and "id" in table.columns:
            t = table[[c for c in cols if c in table.columns]].copy()
            t["id"] = t["id"].astype(str)
            parts.append(t)
    if not parts:
        return None
    info = pd.concat(parts, ignore_index=True).drop_duplicates("id", keep="first")
    for c in cols:
        if c not in info.columns:
            info[c] = None
    return info[cols].reset_index(drop=True)


def _facts(info: pd.DataFrame | None, image_id: str) -> dict[str, str]:
    """Split, patient and label of one image; `info` is :func:`_image_info` indexed by id."""
    from enrich.report.grid import _known

    out = {"split": "", "patient": "", "label": ""}
    if info is None or image_id not in info.index:
        return out
    r = info.loc[image_id]
    for key, col in (("split", "split"), ("patient", "patient_id"), ("label", "label")):
        out[key] = str(r[col]) if _known(r[col]) else ""
    return out


def _leakage(red: Any, emb: Any, info: pd.DataFrame) -> dict[str, Any] | None:
    from enrich.report.grid import leaks

    has_split = info["split"].astype(str).isin(["test"]).any()
    has_patients = info["patient_id"].notna().any()
    if not (has_split or has_patients):
        return None
    found = leaks(red, emb.ids, emb.vectors, info)
    return {
        "threshold": f"{found.threshold:g}",
        "n_split": found.n_split,
        "n_patients": found.n_patients,
        "has_split": bool(has_split),
        "has_patients": bool(has_patients),
        "shown": len(found.pairs),
        "unchecked": [f"{n:,}" for n in found.unchecked],
        "rows": [
            {
                "a": r["id_a"],
                "b": r["id_b"],
                "similarity": f"{r['similarity']:.3f}",
                "split": f"{r['split_a'] or '?'} / {r['split_b'] or '?'}",
                "patients": f"{r['patient_a'] or '?'} / {r['patient_b'] or '?'}",
                "crosses": r["crosses"],
            }
            for r in S.records(found.pairs)
        ],
    }


def _grids(
    run: RunData, manifest: pd.DataFrame, info: pd.DataFrame | None, red: Any, emb: Any
) -> tuple[dict[str, str], dict[str, list[dict[str, str]]], list[str]]:
    from enrich.report import grid

    out: dict[str, str] = {}
    ids: dict[str, list[dict[str, str]]] = {}
    notes: list[str] = []
    picks: dict[str, list[str]] = {}
    if run.subsets is not None:
        picks = grid.first_picks(run.subsets, k=8)
    groups = (
        grid.duplicate_examples(red, emb.ids, vectors=emb.vectors, n_groups=4, max_size=8)
        if red is not None and emb is not None
        else []
    )
    wanted = [i for v in picks.values() for i in v] + [i for g in groups for i, _ in g]
    if not wanted:
        return out, ids, notes
    if info is not None:  # one lookup per image shown
        info = info.loc[info["id"].isin(set(wanted))].set_index("id")
    try:
        pixels = grid.load_images(manifest, wanted)
    except _OPTIONAL_ERRORS as exc:
        return out, ids, [f"Images could not be read for the grids: {exc}"]
    if picks:
        shown = {k: [i for i in v if i in pixels] for k, v in picks.items()}
        if all(shown.values()):
            caps: dict[str, list[str]] = {}
            ids["picks"] = []
            for k, v in shown.items():
                caps[k] = []
                for n, i in enumerate(v, start=1):
                    f = _facts(info, i)
                    label = f"label {f['label']}" if f["label"] else None
                    caps[k].append(
                        grid.caption(i, split=f["split"], patient=f["patient"], extra=label)
                    )
                    ids["picks"].append({"group": f"{_label(k)} #{n}", "id": i, **f})
            out["picks"] = _png(
                grid.picks_grid(
                    {k: [pixels[i] for i in v] for k, v in shown.items()}, captions=caps
                )
            )
        else:
            notes.append("The images of the first picks could not be read.")
    if groups:
        rows = [[(i, s) for i, s in g if i in pixels] for g in groups]
        rows = [g for g in rows if len(g) >= 2]
        if rows:
            dup_caps = []
            ids["duplicates"] = []
            for n, g in enumerate(rows, start=1):
                line = []
                for i, sim in g:
                    f = _facts(info, i)
                    line.append(
                        grid.caption(
                            i, split=f["split"], patient=f["patient"], extra=f"sim {sim:.3f}"
                        )
                    )
                    ids["duplicates"].append(
                        {"group": f"group {n}", "id": i, "similarity": f"{sim:.3f}", **f}
                    )
                dup_caps.append(line)
            out["duplicates"] = _png(
                grid.duplicates_grid([[pixels[i] for i, _ in g] for g in rows], captions=dup_caps)
            )
    return out, ids, notes


def _provenance(run: RunData) -> dict[str, Any]:
    meta = run.meta
    csv = run.run_dir / "results.csv"
    digest = hashlib.sha256(csv.read_bytes()).hexdigest()[:16] if csv.is_file() else "–"
    versions = meta.get("versions") or meta.get("package_versions") or {}
    if not isinstance(versions, dict):
        versions = {"versions": str(versions)}
    from enrich import __version__

    seeds = meta.get("seeds")
    if not isinstance(seeds, dict):
        seeds = {k: v for k, v in meta.items() if "seed" in k.lower()}
    main_seed = seeds.get("seed", meta.get("seed"))
    fingerprint = meta.get("data_fingerprint") or meta.get("fingerprint")
    split: dict[str, Any] = meta["split"] if isinstance(meta.get("split"), dict) else {}
    emb: dict[str, Any] = meta["embeddings"] if isinstance(meta.get("embeddings"), dict) else {}
    items: list[tuple[str, Any]] = [
        ("Run folder", str(run.run_dir.resolve())),
        ("Workspace", str(run.workspace) if run.workspace else "not found"),
        ("Task", meta.get("task")),
        ("Data fingerprint", fingerprint),
        ("Base seed", main_seed),
        ("Train/test split", ", ".join(f"{k}: {v}" for k, v in split.items()) or None),
        ("Embeddings", ", ".join(f"{k}: {v}" for k, v in emb.items() if not isinstance(v, dict))),
        ("Device", meta.get("device")),
        ("Started", meta.get("started")),
        ("Finished", meta.get("finished")),
        ("results.csv sha256", digest),
        ("Report made by", f"enrich {__version__}, Python {platform.python_version()}"),
    ]
    shown = [
        {"key": k, "value": v if isinstance(v, str) else json.dumps(v, default=str)}
        for k, v in items
        if v not in (None, "", {}, [])
    ]
    return {
        "items": shown,
        "versions": [{"key": str(k), "value": str(v)} for k, v in sorted(versions.items())],
        "seeds": json.dumps(seeds, indent=2, sort_keys=True, default=str) if seeds else "",
        "config": json.dumps(meta.get("config", {}), indent=2, sort_keys=True, default=str),
        "meta": json.dumps(meta, indent=2, sort_keys=True, default=str),
    }


# --------------------------------------------------------------------------- render


def render(context: dict[str, Any]) -> str:
    """Render the packaged Jinja2 template with `context` (autoescaped HTML)."""
    from importlib import resources

    import jinja2

    source = (resources.files("enrich.report") / "templates" / _TEMPLATE).read_text(
        encoding="utf-8"
    )
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(source).render(**context)


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    metric: str | None = None,
    baseline: str = "random",
    alpha: float = S.ALPHA,
    rule: S.Rule = "sustained",
    images: bool = True,
) -> Path:
    """Write the self-contained HTML report of a benchmark run.

    Parameters
    ----------
    run_dir : path-like
        The run folder (``runs/NAME``) with ``results.csv``.
    out : path-like, optional
        Where to write; default ``run_dir/report.html``.
    metric : str, optional
        Which metric to report (default: the table's only one; ``auc`` then ``jaccard``).
    baseline : str
        Strategy the others are compared with (stars, Fig. 5).
    alpha : float
        Significance level.
    rule : {"sustained", "first"}
        Which definition of "smallest subset indistinguishable from the full set" the
        headline uses (:func:`enrich.evaluate.stats.smallest_equivalent`).
    images : bool
        Include the image grids (reads images from their sources).

    Returns
    -------
    Path
        The report file, written atomically.

    Raises
    ------
    EnrichError
        If `run_dir` is not a run folder or its results table is empty or invalid.

    Examples
    --------
    >>> write_report("WS/runs/benchmark-quick")  # doctest: +SKIP
    PosixPath('WS/runs/benchmark-quick/report.html')
    """
    run = load_run(run_dir)
    target = Path(out) if out is not None else run.run_dir / "report.html"
    if target.is_dir():
        target = target / "report.html"
    with warnings.catch_warnings():
        # Small samples make scipy/numpy chatty (ties, n=1 SDs); the page states n itself.
        warnings.simplefilter("ignore", RuntimeWarning)
        context = build_context(
            run, metric=metric, baseline=baseline, alpha=alpha, rule=rule, images=images
        )
    write_text(target, render(context))
    return target
